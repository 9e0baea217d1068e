"""One analysis in a single-use process forked by the zygote.

The zygote (``bridgehost_analysis.zygote``) forks a child ahead of demand
and calls ``main`` in it. The child leaves the zygote's session, arranges
to die with it, points its file descriptors 1 and 2 at the output pipe,
applies the task's resource limits, and then waits for its ``ChildSpec`` on
the reply socket. It builds ``ctx`` from the datastore, imports the script
under a unique module name, calls the function, checks the value, sends one
``Reply`` and exits, so no module or global state of a script outlives its
run (AutoCore's "clean slate on every single run"): the next run is a new
fork of the clean zygote.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib.util
import math
import os
import resource
import signal
import socket
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec

from bridgehost.imports import import_object
from bridgehost.text import cut_middle
from bridgehost_analysis.datastore import Datastore, DatastoreError
from bridgehost_analysis.jsonvalue import NotJSONError, TooLarge, to_json_value
from bridgehost_analysis.proc import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_PDEATHSIG,
    RUNNING_NAME,
    WAITING_NAME,
    prctl,
    set_name,
)
from bridgehost_analysis.protocol import REPLY_HEADER, ChildSpec, Limits, Reply, RunEnd
from bridgehost_analysis.sandbox import Confinement

MAX_MESSAGE_CHARS = 4000
"""An error message longer than this is cut in its middle."""
MAX_TRACEBACK_CHARS = 64 * 1024
"""A traceback longer than this is cut in its middle."""


def main(channel: socket.socket, output_fd: int, limits: Limits, zygote_pid: int, confinement: Confinement) -> NoReturn:
    """Run in a freshly forked child: isolate, wait for the spec, run it,
    reply, exit. Never returns. An unused child (the host closed the reply
    socket without a spec) exits 0 quietly.

    What the child needs after the script ran (its exit, the encoder, the
    socket's send) is taken here, before any script is imported, and held
    in this frame: a script that patches ``os._exit``, ``msgspec`` or
    ``socket`` changes its own run only."""
    exit_now = os._exit
    send = channel.sendall
    encode = msgspec.json.Encoder().encode
    exit_code = 70  # EX_SOFTWARE: a bug of the runner itself
    try:
        _isolate(output_fd, zygote_pid)
        _limit(limits)
        gc.enable()
        # Forks share the zygote's generator state: draw a new seed (``random``
        # reseeds itself at fork). numpy 2 imports numpy.random lazily (11 ms):
        # if the zygote did not, a script that does gets fresh entropy anyway.
        np_random = sys.modules.get("numpy.random")
        if np_random is not None:
            np_random.seed()
        refused = _prepare(confinement, limits.scratch_root)
        if limits.warm:
            with contextlib.suppress(Exception):  # only a head start: e.g. a tiny memory_limit_mb
                _warm()
        raw = _receive(channel)
        if raw:
            set_name(RUNNING_NAME)
        exit_code = _run(raw, confinement, refused, send, encode) if raw else 0
    finally:
        _flush()
        # os._exit: threads the script left running and atexit hooks must not hold the process.
        exit_now(exit_code)


def _prepare(confinement: Confinement, scratch_root: str) -> str:
    """The run's scratch folder (``TMPDIR``), and its confinement prepared
    (``Confinement.prepare``); the reason the confinement cannot be applied,
    or ``""``."""
    scratch = ""
    if scratch_root:
        scratch = os.path.join(scratch_root, str(os.getpid()))
        os.mkdir(scratch, 0o700)
        os.environ["TMPDIR"] = scratch
        # tempfile reads TMPDIR when first asked; if something imported it
        # and asked already, it has the zygote's answer cached.
        if "tempfile" in sys.modules:
            setattr(sys.modules["tempfile"], "tempdir", scratch)  # noqa: B010 -- a module typeshed does not know is there
    try:
        confinement.prepare(scratch)
    except OSError as e:
        return f"preparing it failed: {e}"
    return ""


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # a script may have closed or replaced them
            stream.flush()


def _isolate(output_fd: int, zygote_pid: int) -> None:
    """Its own session and process group; killed if the zygote dies; the
    reaper of orphaned descendants (so a process the script double-forks
    stays in this process's tree until the zygote kills the tree); the
    output pipe on file descriptors 1 and 2."""
    os.setsid()
    set_name(WAITING_NAME)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:  # the zygote died before PDEATHSIG was armed
        os._exit(0)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    faulthandler.enable()  # a segfault prints the Python stack to the captured output
    sys.dont_write_bytecode = True  # leave no __pycache__ in the datastore's scripts folder


def _limit(limits: Limits) -> None:
    """Apply RLIMIT_AS, RLIMIT_CPU and RLIMIT_NPROC as configured, and no
    core files (the working directory is the run folder)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.memory_limit_mb is not None:
        _setrlimit(resource.RLIMIT_AS, limits.memory_limit_mb << 20, limits.memory_limit_mb << 20)
    if limits.cpu_limit_s is not None:
        soft = max(1, math.ceil(limits.cpu_limit_s))
        _setrlimit(resource.RLIMIT_CPU, soft, soft + 1)  # SIGXCPU at soft, SIGKILL a second later
    if limits.nproc_limit is not None:
        _setrlimit(resource.RLIMIT_NPROC, limits.nproc_limit, limits.nproc_limit)


def _setrlimit(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:  # cannot raise above what we were given
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def _warm() -> None:
    """Go through the steps of a run on made-up data, while waiting for the
    real one. A fork shares the zygote's memory until a page is written, and
    Python writes to every object it touches (reference counts): the first
    run in a fresh fork copies some 500 pages, about 1.2 ms. Done ahead, the
    run itself copies a few dozen. Nothing of it is kept: the run starts from
    the same state in every child."""
    spec = msgspec.json.decode(_WARM_SPEC, type=ChildSpec)
    Datastore(spec.root).run(spec.project_id, spec.definition_id, spec.run_id).path.is_dir()
    name = f"bridgehost_warm_{os.urandom(6).hex()}"
    module_spec = importlib.util.spec_from_file_location(name, spec.script_path)
    assert module_spec is not None  # a path ending in .py always has one
    module = importlib.util.module_from_spec(module_spec)
    exec(compile("def calculate_results(ctx):\n    return {}\n", spec.script_path, "exec"), vars(module))  # noqa: S102 -- a fixed stand-in
    value = to_json_value(module.calculate_results({}) or {"a": [1.0, 2, "b", None]}, "result", max_bytes=1 << 10)
    msgspec.json.encode(Reply(result=msgspec.Raw(msgspec.json.encode(value))))


_WARM_SPEC = msgspec.json.encode(
    ChildSpec(
        root="/nonexistent/bridgehost-warm-up",
        script="warm.py",
        script_path="/nonexistent/bridgehost-warm-up/scripts/warm.py",
        function="calculate_results",
        project_id="p",
        definition_id="d",
        run_id="r",
    )
)


def _receive(channel: socket.socket) -> bytes:
    """The spec: everything up to the host's shutdown of its side."""
    data = bytearray()
    while chunk := channel.recv(1 << 16):
        data += chunk
    return bytes(data)


def _run(raw: bytes, confinement: Confinement, refused: str, send: Callable[[bytes], None], encode: Callable[[Any], bytes]) -> int:
    """Run the spec in ``raw`` confined, send the reply; return the exit code."""
    exit_code = 0
    try:
        spec = msgspec.json.decode(raw, type=ChildSpec)
        refused = refused or _enter(confinement, spec)
        if refused:
            reply = Reply(
                end=RunEnd.SANDBOX_FAILED,
                message=f"the run's sandbox ({confinement.mode}) could not be applied: {refused}",
            )
        else:
            reply = _analyse(spec)
    except SystemExit as e:  # sys.exit() in the script: say so, then exit as asked
        code = e.code
        exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        reply = Reply(end=RunEnd.EXITED, exit_code=exit_code, message=cut_middle(str(code), MAX_MESSAGE_CHARS), traceback=_format(e))
    except BaseException as e:  # everything the script raises is reported
        reply = Reply(
            end=RunEnd.RAISED,
            message=_describe(e),
            traceback=_format(e),
            out_of_memory=isinstance(e, MemoryError),
        )
    _flush()  # the output comes before the reply: the host has it all once the reply is in
    try:
        data = encode(reply)
        send(len(data).to_bytes(REPLY_HEADER, "big") + data)
    except BaseException:  # the host is gone, or memory is: nobody to tell
        exit_code = exit_code or 70
    return exit_code


def _enter(confinement: Confinement, spec: ChildSpec) -> str:
    """Confine this process to ``spec``'s run (its folder, read only; the
    script's folder); the reason it failed, or ``""``."""
    run = Datastore(spec.root).run(spec.project_id, spec.definition_id, spec.run_id)
    try:
        confinement.enter(read=[str(run.path)], read_exec=[os.path.dirname(spec.script_path)] if spec.script_path else [])
    except OSError as e:
        return str(e)
    return ""


def _analyse(spec: ChildSpec) -> Reply:
    run = Datastore(spec.root).run(spec.project_id, spec.definition_id, spec.run_id)
    try:
        ctx = run.ctx(spec.custom_params, as_lists=spec.raw_data == "lists", mmap=spec.raw_data == "mmap")
    except (DatastoreError, OSError) as e:
        return Reply(end=RunEnd.IO_FAILED, message=f"reading run {spec.run_id!r} failed: {e}")

    os.chdir(run.path)  # relative paths start in the run folder
    if spec.target:  # a registered analysis (register_analyses): imported here, under the limits, like a script
        function = import_object(spec.target)  # ImportError, AttributeError: reported as the run's exception
    else:
        sys.path.insert(0, os.path.dirname(spec.script_path))  # the script's sibling modules are importable
        stem = "".join(c if c.isalnum() else "_" for c in os.path.basename(spec.script_path)[:-3])
        name = f"bridgehost_script_{stem}_{os.urandom(6).hex()}"
        module_spec = importlib.util.spec_from_file_location(name, spec.script_path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        _as_multiprocessing_main(module)
        sys.modules[name] = module  # dataclasses and pickle look the module up by name
        code = module_spec.loader.get_code(name)  # type: ignore[attr-defined]  # a SourceFileLoader
        exec(code, vars(module))  # noqa: S102 -- running the script is the point; not exec_module: it refuses a module named __mp_main__

        function = getattr(module, spec.function, None)
        if not callable(function):
            defined = sorted(
                k for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == module.__name__
            )
            return Reply(
                end=RunEnd.NO_FUNCTION,
                message=f"script {spec.script!r} defines no function {spec.function!r} "
                f"(its functions: {', '.join(defined) or 'none'}); name one of them in the request's 'function'",
            )
    value = function(ctx)

    label = f"{spec.function}()"
    if not isinstance(value, dict):
        return Reply(
            end=RunEnd.BAD_RESULT,
            message=f"{label} must return a dict, it returned {_type_of(value)}",
        )
    try:
        data = msgspec.json.encode(to_json_value(value, "result", max_bytes=spec.max_result_bytes))
    except TooLarge as e:
        return Reply(end=RunEnd.BAD_RESULT, message=_over_limit(label, spec, f"a dict ({e})"))
    except NotJSONError as e:
        return Reply(end=RunEnd.BAD_RESULT, message=cut_middle(f"{label} returned a dict that is not JSON data: {e}", MAX_MESSAGE_CHARS))
    except MemoryError:
        del value  # frees what the script built, if nothing else holds it
        return Reply(
            end=RunEnd.BAD_RESULT,
            message=f"{label} returned a dict too large to encode as JSON within memory_limit_mb: "
            "return less (leave big arrays in the datastore)",
            out_of_memory=True,
        )
    if len(data) > spec.max_result_bytes:
        return Reply(end=RunEnd.BAD_RESULT, message=_over_limit(label, spec, f"{len(data)} bytes of JSON"))
    return Reply(result=msgspec.Raw(data))


def _as_multiprocessing_main(module: types.ModuleType) -> None:
    """Make ``module`` (the script) what ``multiprocessing`` takes for the
    main script, so a ``spawn`` or ``forkserver`` pool works: a new
    interpreter started by either runs the main module's file as
    ``__mp_main__`` (``multiprocessing.spawn.prepare``; the multiprocessing
    docs, "Safe importing of main module") and unpickles the functions sent
    to it by module name. So the script is ``__main__`` and ``__mp_main__``
    (as ``multiprocessing`` aliases them), without a ``__spec__`` (spawn then
    runs its file by path, as for ``python script.py``), and its
    ``__name__`` is ``"__mp_main__"``: functions pickle as
    ``__mp_main__.f``, and an ``if __name__ == "__main__":`` block does not run."""
    module.__name__ = "__mp_main__"
    module.__spec__ = None
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _over_limit(label: str, spec: ChildSpec, what: str) -> str:
    return (
        f"{label} returned {what}, over {spec.result_limit_name} ({spec.max_result_bytes} bytes): "
        f"return less (leave big arrays in the datastore) or raise {spec.result_limit_setting}"
    )


def _type_of(value: object) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _describe(e: BaseException) -> str:
    """``Type: message`` of ``e``, cut in its middle to ``MAX_MESSAGE_CHARS``."""
    try:
        text = str(e)
    except BaseException:  # a broken __str__ of the script's own exception
        text = "<str() of the exception failed>"
    return cut_middle(f"{type(e).__name__}: {text}" if text else type(e).__name__, MAX_MESSAGE_CHARS)


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
        return cut_middle("".join(traceback.format_exception(type(e), e, tb)), MAX_TRACEBACK_CHARS)
    except BaseException:  # e.g. MemoryError again while formatting
        return _describe(e)

