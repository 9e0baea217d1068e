"""The analysis child process: ``python -m bridgehost_analysis.child``.

Started by ``bridgehost_analysis.runner`` for a single analysis, then gone,
so no module or global state of a script outlives its run (the seed's
"clean slate on every single run"). Reads a ``ChildSpec`` from stdin,
limits itself, builds ``ctx`` from the datastore, imports the script under
a unique module name, calls the function, checks the value and writes one
``Reply`` to the result channel. Only the standard library is imported
before the resource limits are in place.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import math
import os
import resource
import sys
import traceback
import uuid
from typing import Any


def main() -> None:
    # The reply goes to a private copy of the original stdout; fd 1 then
    # points at stderr, so prints of the script, and of any process it
    # starts, land in the captured output instead of corrupting the reply.
    channel = os.fdopen(os.dup(1), "wb")  # os.dup: not inherited by the script's children
    os.dup2(2, 1)
    raw = json.loads(sys.stdin.buffer.read())
    _limit(raw.get("memory_limit_mb"), raw.get("cpu_limit_s"))
    faulthandler.enable()  # a segfault prints the Python stack to the captured output
    sys.dont_write_bytecode = True  # leave no __pycache__ in the datastore's scripts folder

    import msgspec

    from bridgehost_analysis.protocol import ChildSpec, Reply

    exit_code = 0
    try:
        reply = _analyse(msgspec.convert(raw, ChildSpec))
    except SystemExit as e:  # sys.exit() in the script: say so, then exit as asked
        code = e.code
        exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        reply = Reply(ok=False, kind="exit", exit_code=exit_code, message=str(code), traceback=_format(e))
    except BaseException as e:  # everything the script raises is reported
        reply = Reply(
            ok=False,
            kind="raised",
            message=_describe(e),
            traceback=_format(e),
            out_of_memory=isinstance(e, MemoryError),
        )
    try:
        channel.write(msgspec.json.encode(reply))
        channel.close()
    except BaseException:  # the parent is gone, or memory is: nobody to tell
        exit_code = exit_code or 70
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # a script may have closed or replaced them
            stream.flush()
    # os._exit: threads the script left running and atexit hooks must not hold the process.
    os._exit(exit_code)


def _limit(memory_limit_mb: int | None, cpu_limit_s: float | None) -> None:
    """Apply RLIMIT_AS and RLIMIT_CPU, and no core files (the working
    directory is the run folder)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_limit_mb is not None:
        _setrlimit(resource.RLIMIT_AS, memory_limit_mb << 20, memory_limit_mb << 20)
    if cpu_limit_s is not None:
        soft = max(1, math.ceil(cpu_limit_s))
        _setrlimit(resource.RLIMIT_CPU, soft, soft + 1)  # SIGXCPU at soft, SIGKILL a second later


def _setrlimit(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:  # cannot raise above what we were given
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def _analyse(spec: Any) -> Any:
    import importlib.util

    from bridgehost_analysis.datastore import Datastore, DatastoreError
    from bridgehost_analysis.protocol import Reply

    run = Datastore(spec.root).run(spec.project_id, spec.definition_id, spec.run_id)
    try:
        ctx = run.ctx(spec.custom_params, as_lists=spec.raw_data == "lists")
    except (DatastoreError, OSError) as e:
        return Reply(ok=False, kind="io", message=f"reading run {spec.run_id!r} failed: {e}")

    if spec.target:  # a registered analysis (register_analyses): imported here, under the limits, like a script
        os.chdir(run.path)
        return _result(spec, _import_target(spec.target)(ctx))

    # Sibling modules of the script are importable; relative paths start in the run folder.
    sys.path.insert(0, os.path.dirname(spec.script_path))
    os.chdir(run.path)
    stem = "".join(c if c.isalnum() else "_" for c in os.path.basename(spec.script_path)[:-3])
    name = f"bridgehost_script_{stem}_{uuid.uuid4().hex[:12]}"
    module_spec = importlib.util.spec_from_file_location(name, spec.script_path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickle look the module up by name
    module_spec.loader.exec_module(module)

    function = getattr(module, spec.function, None)
    if not callable(function):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == name)
        return Reply(
            ok=False,
            kind="invalid",
            message=f"script {spec.script!r} defines no function {spec.function!r} "
            f"(its functions: {', '.join(defined) or 'none'}); name one of them in the request's 'function'",
        )
    return _result(spec, function(ctx))


def _import_target(target: str) -> Any:
    """The function ``"package.module:qualname"`` names; raises ImportError/AttributeError."""
    import importlib

    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _result(spec: Any, value: Any) -> Any:
    """The Reply for what the function returned: a JSON dict within max_result_bytes."""
    import msgspec

    from bridgehost_analysis.jsonvalue import NotJSONError, to_json_value
    from bridgehost_analysis.protocol import Reply

    label = f"{spec.function}()"
    if not isinstance(value, dict):
        return Reply(
            ok=False,
            kind="bad_result",
            message=f"{label} must return a dict, it returned {_type_of(value)}",
        )
    try:
        data = msgspec.json.encode(to_json_value(value, "result"))
    except NotJSONError as e:
        return Reply(ok=False, kind="bad_result", message=f"{label} returned a dict that is not JSON data: {e}")
    if len(data) > spec.max_result_bytes:
        return Reply(
            ok=False,
            kind="bad_result",
            message=f"{label} returned {len(data)} bytes of JSON, over max_result_bytes ({spec.max_result_bytes}): "
            "return less (leave big arrays in the datastore) or raise max_result_bytes in the task's config",
        )
    return Reply(ok=True, result=msgspec.Raw(data))


def _type_of(value: object) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _format(e: BaseException) -> str:
    """The traceback from the script's first frame on (runner and import
    machinery frames above it left out)."""
    try:
        tb = e.__traceback__
        while tb is not None and (
            tb.tb_frame.f_code.co_filename == __file__ or tb.tb_frame.f_code.co_filename.startswith("<frozen ")
        ):
            tb = tb.tb_next
        if tb is None and not isinstance(e, SyntaxError):  # raised by the runner itself: keep it all
            tb = e.__traceback__
        return "".join(traceback.format_exception(type(e), e, tb))
    except BaseException:  # e.g. MemoryError again while formatting
        return _describe(e)


if __name__ == "__main__":
    main()
