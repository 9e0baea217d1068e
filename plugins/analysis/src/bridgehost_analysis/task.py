"""The ``analysis`` task: AutoCore's "pure calculator".

A request (AutoCore's manual, "Python Analysis Integration", ``python.run_analysis``)::

    {"script": "analyze_traction.py", "function": "calculate_results",
     "project_id": "...", "definition_id": "...", "run_id": "...",
     "custom_params": {}}

runs ``function(ctx)`` from ``<datastore>/scripts/<script>`` in a fresh
child process over the run's saved data; the dict it returns is the job's
result. Instead of ``script``, a request may name an analysis an installed
plugin registered (``"analysis": "traction.max_force"``, hook
``register_analyses``), and a task's config may fix the script or analysis
its requests run. Reference: ``docs/analysis.md``; the runners and their
costs: ``docs/performance.md``.
"""

from __future__ import annotations

import asyncio
import collections
import keyword
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import msgspec

from bridgehost.config import TaskConfig, TimeoutSeconds
from bridgehost.errors import InvalidField, InvalidRequest, IOFailure, TaskCrashed, UnknownKindError
from bridgehost.jobs import Job, ReplyLimit
from bridgehost.registry import Catalog
from bridgehost.validation import validation_issue
from bridgehost_analysis import sandbox
from bridgehost_analysis.datastore import RESULTS_FILE, Datastore, InvalidId, InvalidScript, ResultsTooLarge, check_id
from bridgehost_analysis.hookspecs import ANALYSES, NamedAnalysis
from bridgehost_analysis.jsonvalue import NotJSONError, to_json_value
from bridgehost_analysis.protocol import ChildSpec, Limits, RawData, Reply, RunEnd
from bridgehost_analysis.runner import RunLeftovers, Runner, SubprocessRunner, ZygoteRunner
from bridgehost_analysis.sandbox import Mode

if TYPE_CHECKING:
    from bridgehost.host import Host

MiB = 1 << 20
MAX_SAVED_RESULTS_BYTES = 1 << 30
"""The highest ``max_saved_results_bytes`` accepted: 1 GiB (a merge holds
the decoded file, several times its size, in the host's memory)."""
MAX_PREFORK = 64
"""The most children a zygote keeps waiting, whatever the concurrency."""
log = logging.getLogger(__name__)


class AnalysisTaskConfig(TaskConfig, kw_only=True, forbid_unknown_fields=True):
    """A ``[[tasks]]`` table of kind ``analysis``.

    Besides ``name``, ``timeout_s`` (wall clock, enforced by the host),
    ``concurrency`` and ``queue_size`` of every task:
    """

    timeout_s: TimeoutSeconds = 60.0
    """As for every task, but never ``None``: every analysis has a limit."""

    renamed_keys: ClassVar[dict[str, str]] = {
        "max_output_bytes": "output_kept_bytes",
        "output_limit_bytes": "output_kill_bytes",
    }
    datastore: str = "./datastore"
    """The datastore folder (``scripts/``, ``results/``); a relative path is
    relative to the config file's folder. AutoCore's ``datastore_directory``."""
    memory_limit_mb: Annotated[int, msgspec.Meta(ge=64)] | None = 2048
    """RLIMIT_AS of the child, in MiB: address space, not resident memory.
    Python with numpy needs about 100 (with one BLAS thread). ``None`` (from
    Python only; TOML has no null): no limit."""
    cpu_limit_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """RLIMIT_CPU of the child, in CPU seconds (rounded up). Absent: none."""
    save_results: bool = False
    """Merge a successful result into the run's saved results (``results.json``)."""
    max_result_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16 * MiB
    """The largest result, as JSON bytes; a bigger one is a CRASH. The
    default is the zmq transport's default ``max_frame_bytes``; a request
    whose trigger bounds its reply (``Request.reply_limit``) gets the smaller
    of the two, so a result too large for its reply is refused in the child,
    before anything is saved."""
    max_saved_results_bytes: Annotated[int, msgspec.Meta(ge=1024, le=MAX_SAVED_RESULTS_BYTES)] = 64 * MiB
    """With ``save_results``: the largest ``results.json`` a merge may
    leave, in bytes (as written, indented). Each merge reads and rewrites
    the whole file, so this bounds the host's memory, time and disk per
    request; a merge that would pass it is refused (IO_FAILURE, the result
    in the reply's data) and the file is left as it was."""
    output_kept_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024
    """How much of the end of the script's stdout/stderr is kept, for error
    messages and the host's DEBUG log (was ``max_output_bytes``)."""
    raw_data: RawData = "lists"
    """How traces arrive in ``ctx["raw_data"]``: ``lists`` of floats (as
    AutoCore's scripts expect), numpy ``arrays`` (faster for long traces) or
    read-only numpy memory maps of the ``.npy`` files (``mmap``: nothing is
    read until the script touches it). A request may ask for another."""
    runner: Literal["zygote", "subprocess", "dask"] = "zygote"
    """``zygote``: fork each run from a process with the runtime and
    ``preload`` imported (about a millisecond); ``subprocess``: a new
    interpreter per run (tens of milliseconds, plus the script's imports);
    ``dask``: fork each run from a zygote on a worker of the Dask cluster at
    ``scheduler`` (``bridgehost-analysis[dask]``; every worker must see the
    datastore at the same path)."""
    scheduler: str | None = None
    """With ``runner = "dask"``: the Dask scheduler's address, ``tcp://HOST:8786``."""
    prefork: Annotated[int, msgspec.Meta(ge=1, le=MAX_PREFORK)] | None = None
    """Children the zygote keeps forked ahead of demand. Absent:
    ``concurrency + 1``, at most ``MAX_PREFORK``."""
    preload: list[str] = msgspec.field(default_factory=lambda: ["numpy"])
    """Modules the zygote imports once, so scripts find them loaded. Each
    must start no thread at import (the zygote checks)."""
    max_processes: Annotated[int, msgspec.Meta(ge=1)] = 64
    """The most processes one run may have alive at once, itself included;
    beyond, all are killed (CRASH). Counted every 20 ms, so it holds for
    root too."""
    nproc_limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """RLIMIT_NPROC of the child: the kernel refuses a fork once the *user*
    has this many processes (all of them, not only this run's); root is
    exempt. Absent: not set."""
    output_kill_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * MiB
    """The most a run may write to stdout/stderr in all; beyond, it is
    killed (CRASH) (was ``output_limit_bytes``)."""
    analysis: str | None = None
    """Run this registered analysis (``register_analyses``) for every
    request; requests then name only the run. Checked when the host is built."""
    script: str | None = None
    """Run this script of ``scripts/`` for every request; checked when the
    host is built (``bridgehost check``). At most one of ``analysis``/``script``."""
    function: str | None = None
    """With ``script``: the function to call (default ``calculate_results``)."""
    sandbox: Mode = "best-effort"
    """How each run is confined (Landlock, ``docs/security.md``):
    ``best-effort`` enforces what the kernel offers and logs one WARNING at
    start naming what it does not; ``require`` refuses to build the task on a
    kernel that cannot enforce every rule; ``off`` confines nothing."""
    network: bool = False
    """Let scripts bind and connect TCP sockets (Landlock ABI 4+ refuses
    both otherwise)."""
    sandbox_read: list[str] = msgspec.field(default_factory=list)
    """Folders every run may read (and execute from) besides the Python
    installation, its script's folder and its run; relative to the config
    file's folder."""
    sandbox_write: list[str] = msgspec.field(default_factory=list)
    """Folders every run may write besides its scratch folder (``TMPDIR``,
    removed after the run); relative to the config file's folder."""


class AnalysisRequest(msgspec.Struct, kw_only=True):
    """The ``data`` of a ``python.run_analysis`` request (see module doc)."""

    project_id: str
    definition_id: str
    run_id: str
    script: str | None = None
    analysis: str | None = None
    function: str | None = None
    custom_params: dict[str, Any] = {}
    raw_data: RawData | None = None


_FIELDS = ("script", "analysis", "function", "project_id", "definition_id", "run_id", "custom_params", "raw_data")
_REQUIRED = ("project_id", "definition_id", "run_id")
_TARGET_FIELDS = ("script", "analysis", "function")  # what to run: from the request, or set by the task's config


def parse_request(params: Any, *, configured_target: str = "") -> AnalysisRequest:
    """Validate a request's ``data``. Raises ``InvalidRequest`` naming the
    unknown, missing or mistyped fields and invalid ids. ``configured_target``
    describes what the task's config runs (``"the script 'a.py'"``); then the
    request must not name a script, analysis or function, else it must name
    one script or one analysis."""
    if not isinstance(params, dict):
        raise InvalidRequest(f"the request data must be an object with the fields {', '.join(_FIELDS)}")
    unknown = sorted(set(params) - set(_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown request field(s): {', '.join(map(repr, unknown))}; the request takes: {', '.join(_FIELDS)}"
        )
    named = [f for f in _TARGET_FIELDS if params.get(f) is not None]
    if configured_target and named:
        raise InvalidRequest(
            f"this task runs {configured_target}, set in its config: leave {', '.join(map(repr, named))} out of the request"
        )
    missing = [f for f in _REQUIRED if f not in params]
    if not configured_target and "script" not in named and "analysis" not in named:
        missing.insert(0, "script")
    if missing:
        hint = " (name a script, or a registered analysis with 'analysis')" if missing[0] == "script" else ""
        raise InvalidRequest(f"missing request field(s): {', '.join(map(repr, missing))}{hint}")
    if "script" in named and "analysis" in named:
        raise InvalidRequest("give 'script' or 'analysis', not both")
    if "analysis" in named and "function" in named:
        raise InvalidRequest("'function' goes with 'script'; a registered analysis is one function already")
    try:
        request = msgspec.convert(params, AnalysisRequest)
    except msgspec.ValidationError as e:
        issue = validation_issue(e)
        expected = issue.expected.replace(" | null", "")  # null means "not given": no need to offer it
        raise InvalidRequest(f"request field {issue.key!r}: {expected}") from None
    try:
        for field in ("project_id", "definition_id", "run_id"):
            check_id(field, getattr(request, field))
        to_json_value(request.custom_params, "custom_params")
    except (InvalidId, NotJSONError) as e:
        raise InvalidRequest(str(e)) from None
    check_function(request.function, InvalidRequest)
    return request


def check_function(function: str | None, error: Callable[[str], Exception]) -> None:
    """Raise ``error(message)`` unless ``function`` is None or a Python function name."""
    if function is not None and (not function.isidentifier() or keyword.iskeyword(function)):
        raise error(f"function {function!r} is not a Python function name")


class AnalysisTask:
    """Runs analysis requests against one datastore (``factory(config, host)``).

    A relative ``datastore`` is resolved by ``host.path`` (against the
    config file's folder). Registered analyses come from ``host.plugins``. Raises
    ``InvalidField`` for a configured ``analysis`` nobody registered or a
    configured ``script`` that is not in ``scripts/``. ``warm_children``:
    see ``Limits.warm`` (``bridgehost reanalyze`` turns it off).
    """

    saved_limit_setting = "max_saved_results_bytes in the task's config"
    """Where ``max_saved_results_bytes`` is set, for messages (``reanalyze``: its option)."""

    def __init__(self, config: AnalysisTaskConfig, host: Host, *, warm_children: bool = True):
        self.config = config
        self.store = Datastore(host.path(config.datastore))
        self._settings = msgspec.structs.asdict(config)
        self.sandbox = sandbox.support(config.sandbox, config.network)
        if config.sandbox == "require" and self.sandbox.missing:
            raise InvalidField(
                "sandbox",
                f"'require', but this kernel (Linux {os.uname().release}, Landlock ABI {self.sandbox.abi or 'none'}) "
                "cannot enforce: " + "; ".join(f"{f.what} (needs ABI {f.abi})" for f in self.sandbox.missing),
                "run on a newer kernel with Landlock enabled, or set sandbox = \"best-effort\"",
            )
        limits = Limits(
            memory_limit_mb=config.memory_limit_mb,
            cpu_limit_s=config.cpu_limit_s,
            nproc_limit=config.nproc_limit,
            max_processes=config.max_processes,
            preload=config.preload,
            sandbox=config.sandbox,
            network=config.network,
            sandbox_read=[str(host.path(p).resolve()) for p in config.sandbox_read],
            sandbox_write=[str(host.path(p).resolve()) for p in config.sandbox_write],
            warm=warm_children,
        )
        self.runner: Runner = self._runner(config, limits)
        self.analyses: Catalog[NamedAnalysis] = host.plugins.catalog(ANALYSES)
        self.configured_target = ""
        """What the config makes every request run (``"the script 'a.py'"``), or empty."""
        self.killed: collections.Counter[str] = collections.Counter()
        """Runs killed, by ``KILL_CAUSES`` (for the metrics)."""
        if config.analysis is not None and config.script is not None:
            raise InvalidField("analysis", "give 'analysis' or 'script', not both")
        if config.function is not None and config.script is None:
            raise InvalidField("function", "'function' goes with 'script'", "set script, or drop function")
        check_function(config.function, lambda m: InvalidField("function", m))
        if config.analysis is not None:
            self._analysis_target(config.analysis, lambda m, h: InvalidField("analysis", m, h))
            self.configured_target = f"the analysis {config.analysis!r}"
        if config.script is not None:
            try:
                self.store.script_path(config.script)
            except InvalidScript as e:
                raise InvalidField("script", str(e)) from None
            self.configured_target = f"the script {config.script!r}"

    def _runner(self, config: AnalysisTaskConfig, limits: Limits) -> Runner:
        if (config.runner == "dask") != (config.scheduler is not None):
            raise InvalidField(
                "scheduler", "'scheduler' goes with runner = \"dask\", and runner = \"dask\" needs it",
                "e.g. runner = \"dask\" and scheduler = \"tcp://10.0.0.5:8786\"",
            )
        prefork = config.prefork or min(config.concurrency + 1, MAX_PREFORK)
        if config.runner == "subprocess":
            return SubprocessRunner(limits)
        if config.runner == "dask":
            try:
                from bridgehost_analysis.batch.dask import DaskRunner
            except ImportError:
                raise InvalidField("runner", "runner = \"dask\" needs Dask distributed",
                                   "pip install 'bridgehost-analysis[dask]'") from None
            assert config.scheduler is not None
            deadline = config.timeout_s + 1 if config.timeout_s is not None else None
            return DaskRunner(limits, scheduler=config.scheduler, datastore=str(self.store.root.resolve()),
                              prefork=prefork, deadline_s=deadline)
        return ZygoteRunner(limits, prefork=prefork)

    def _analysis_target(self, name: str, error: Any) -> str:
        """The ``"module:qualname"`` registered as analysis ``name``; else
        raise ``error(message, hint)`` naming the available analyses."""
        try:
            return self.analyses.get(name).target
        except UnknownKindError as e:
            raise error(e.message, e.hint) from e.__cause__

    @property
    def max_result_bytes(self) -> int:
        """The largest result this task returns, in bytes of JSON
        (``bridgehost.components.ResultBounded``)."""
        return self.config.max_result_bytes

    def check(self) -> list[str]:
        """Warnings for ``bridgehost check``: what would make requests fail
        now but may be fixed without changing the config."""
        root = self.store.root
        if root.exists() and not root.is_dir():
            return [
                (
                    f"datastore {root} is a file, not a folder: every request will fail; "
                    "set datastore to the folder that holds scripts/ and results/"
                )
            ]
        warnings = []
        if not self.configured_target and not self.store.scripts_dir.is_dir():
            warnings.append(f"scripts folder {self.store.scripts_dir} does not exist: script requests will be rejected")
        if not self.store.results_dir.is_dir():
            warnings.append(f"results folder {self.store.results_dir} does not exist: no run has been saved yet")
        if (warning := self.sandbox.warning()) is not None:
            warnings.append(warning)
        for key in ("sandbox_read", "sandbox_write"):
            warnings += [f"{key}: {p} does not exist: the rule is skipped" for p in getattr(self.runner.limits, key)
                         if not os.path.exists(p)]
        return warnings

    def describe(self) -> list[str]:
        """Lines for ``bridgehost check``: how each run is confined on this kernel."""
        return self.sandbox.describe()

    async def start(self) -> None:
        """Start the runner (the zygote: imports ``preload``, forks the first
        children). Raises ``ZygoteFailed`` if it cannot start."""
        await self.runner.start()  # the host has logged check()'s warnings, the sandbox's among them

    async def stop(self) -> None:
        """Stop the runner: waiting children and the zygote exit."""
        await self.runner.stop()

    async def run(self, job: Job) -> msgspec.Raw:
        """Run the request in ``job.params``; return the function's dict as
        the JSON the child encoded (``msgspec.Raw``: passed on to the reply
        without being decoded and encoded again; decoded here only to save it).
        The result is bounded by ``max_result_bytes`` and, if smaller, by
        ``job.request.reply_limit``.

        Raises ``InvalidRequest`` (bad request, unknown script or function),
        ``IOFailure`` (the run is missing or unreadable, saving failed) or
        ``TaskCrashed`` (the script raised, exited, died or returned no JSON
        dict; ``data`` holds ``traceback`` and ``output`` where known).
        Cancellation (the host's timeout) kills the child's process group.
        """
        request = parse_request(job.params, configured_target=self.configured_target)
        target = self._resolve(request)
        run = self.store.run(request.project_id, request.definition_id, request.run_id)
        if not run.exists():
            raise IOFailure(
                f"run folder {run.path} does not exist: save the run's data to the datastore "
                f"({self.store.root}) before requesting its analysis, with the same ids"
            )
        max_result_bytes, limit_name, limit_setting = self._result_limit(job.request.reply_limit)
        spec = ChildSpec(
            root=str(self.store.root.resolve()),
            **target,
            custom_params=request.custom_params,
            raw_data=request.raw_data or self.config.raw_data,
            max_result_bytes=max_result_bytes,
            result_limit_name=limit_name,
            result_limit_setting=limit_setting,
            **run.ids,
        )
        job.log.info("running %s:%s on %s/%s/%s", spec.script, spec.function, *run.ids.values())
        try:
            leftovers = await self.runner.run(
                spec, output_kept_bytes=self.config.output_kept_bytes, output_kill_bytes=self.config.output_kill_bytes
            )
        except asyncio.CancelledError:
            self.killed["cancelled"] += 1
            raise
        cause = kill_cause(leftovers)
        if cause:
            self.killed[cause] += 1
        if leftovers.output:
            job.log.debug("script output:\n%s", leftovers.output)
        result = self._interpret(leftovers, spec)
        if self.config.save_results:
            value = msgspec.json.decode(result)
            try:
                # A thread: fsync may take a while, the event loop must not wait for it.
                await asyncio.to_thread(run.merge_results, value, max_bytes=self.config.max_saved_results_bytes)
            except ResultsTooLarge as e:  # a script adding new keys on every request: a bound, not a disk error
                raise IOFailure(
                    f"the analysis succeeded but its result was not saved: {e.path} "
                    f"{'is already' if e.already else 'would become'} {e.size} bytes, over "
                    f"max_saved_results_bytes ({e.limit} bytes); the result is in this reply's data and "
                    f"{RESULTS_FILE} is unchanged; raise {self.saved_limit_setting}, or have the script return "
                    "the same keys each time rather than new ones",
                    data={"result": value},
                ) from e
            except Exception as e:  # whatever failed, the result is in the reply, never lost
                raise IOFailure(
                    f"the analysis succeeded but merging its result into {run.path} failed: {e}; "
                    "the result is in this reply's data; check the datastore's disk and permissions",
                    data={"result": value},
                ) from e
        return result

    def _result_limit(self, reply_limit: ReplyLimit | None) -> tuple[int, str, str]:
        """The ChildSpec fields bounding the result (``max_result_bytes``,
        ``result_limit_name``, ``result_limit_setting``): the task's
        ``max_result_bytes``, or the room in the request's reply if smaller."""
        if reply_limit is not None and reply_limit.max_bytes < self.config.max_result_bytes:
            return (
                reply_limit.max_bytes,
                "max_result_bytes or what its reply can carry",
                f"max_result_bytes in the task's config and {reply_limit.setting}",
            )
        return self.config.max_result_bytes, "max_result_bytes", "max_result_bytes in the task's config"

    def _resolve(self, request: AnalysisRequest) -> dict[str, Any]:
        """The ChildSpec fields saying what to run: a script of ``scripts/``
        or a registered analysis (``target``), from the config or the request."""
        analysis = self.config.analysis or request.analysis
        if analysis is not None:
            target = self._analysis_target(analysis, lambda m, h: InvalidRequest(f"{m}; {h}"))
            return {"script": analysis, "script_path": "", "function": target.partition(":")[2], "target": target}
        name = self.config.script or request.script
        assert name is not None  # parse_request asked for one
        try:
            path = self.store.script_path(name)
        except InvalidScript as e:
            raise InvalidRequest(str(e)) from None
        function = self.config.function or request.function or "calculate_results"
        return {"script": name, "script_path": str(path), "function": function}

    def _interpret(self, leftovers: RunLeftovers, spec: ChildSpec) -> msgspec.Raw:
        """The function's dict as JSON, or the error for how the run ended (``RunEnd``)."""
        label = f"{spec.script}:{spec.function}"
        data = {"output": leftovers.output} if leftovers.output else {}
        if leftovers.killed_for is not None:
            settings = {**self._settings, "max_result_bytes": spec.max_result_bytes}
            raise TaskCrashed(f"{label} {_KILLED[leftovers.killed_for].format_map(settings)}", data)
        if leftovers.reply is None:
            raise TaskCrashed(f"{label} {_death(leftovers.returncode, self.config)}", data)
        try:
            reply = msgspec.json.decode(leftovers.reply, type=Reply)
        except msgspec.DecodeError as e:
            message = f"{label} sent an unreadable reply ({e}); this is a bug of bridgehost-analysis, please report it"
            raise TaskCrashed(message, data) from None
        if reply.end is RunEnd.RETURNED:
            return reply.result
        if reply.traceback:
            data["traceback"] = reply.traceback
        if reply.end is RunEnd.IO_FAILED:
            raise IOFailure(reply.message, data)
        if reply.end is RunEnd.NO_FUNCTION:
            raise InvalidRequest(reply.message, data)
        if reply.end is RunEnd.SANDBOX_FAILED:
            raise TaskCrashed(f"{label}: {reply.message}; nothing of the run was read or run", data)
        if reply.end is RunEnd.EXITED:
            raise TaskCrashed(
                f"{label} exited with code {reply.exit_code} (sys.exit) before returning a result; "
                "return a dict instead of exiting",
                data,
            )
        if reply.end is RunEnd.RAISED:
            hint = "see the traceback; fix the script or the run's data"
            if reply.out_of_memory:
                limit = self.config.memory_limit_mb
                hint = "it ran out of memory" + (f" under memory_limit_mb ({limit})" if limit else "")
            raise TaskCrashed(f"{label} raised {reply.message} ({hint})", data)
        raise TaskCrashed(f"{label}: {reply.message}", data)  # BAD_RESULT


KILL_CAUSES = (
    "cancelled",
    *(end.value for end in (RunEnd.KILLED, RunEnd.TOO_MANY_PROCESSES, RunEnd.TOO_MUCH_OUTPUT, RunEnd.REPLY_TOO_LARGE)),
    RunEnd.ZYGOTE_LOST.value,
    "signal",
)
"""Why a run was killed (the ``cause`` label of the metrics): the host
cancelled its job (``timeout_s``, shutdown); bridgehost killed it
(``RunEnd``: the host asked, over ``max_processes``, ``output_kill_bytes``
or ``max_result_bytes``, its zygote was lost); it died by a signal bridgehost
did not send (a segfault, ``cpu_limit_s``, the kernel's out-of-memory killer)."""


def kill_cause(leftovers: RunLeftovers) -> str:
    """The ``KILL_CAUSES`` entry of a run that ended, ``""`` if it was not killed."""
    if leftovers.killed_for is not None:
        return leftovers.killed_for.value
    if leftovers.reply is None and leftovers.returncode < 0:
        return "signal"
    return ""


_KILLED = {
    RunEnd.REPLY_TOO_LARGE: "sent more than max_result_bytes ({max_result_bytes}) and was killed: "
    "return less, or raise max_result_bytes in the task's config",
    RunEnd.TOO_MANY_PROCESSES: "had more than max_processes ({max_processes}) processes alive at once and was "
    "killed with all of them (a fork bomb?): start fewer, or raise max_processes",
    RunEnd.TOO_MUCH_OUTPUT: "wrote more than output_kill_bytes ({output_kill_bytes}) to stdout/stderr and was "
    "killed: print less, or raise output_kill_bytes",
    RunEnd.KILLED: "was killed by the host before returning a result",
    RunEnd.ZYGOTE_LOST: "was lost with the analysis zygote, which died, was stopped or stopped answering during "
    "the run (see the host's log); the next request starts a new zygote",
}
"""Why bridgehost killed a run (``RunLeftovers.killed_for``), as the end of
a sentence; ``{key}`` is the task's setting."""
_NATIVE = "a crash in native code (a C extension or ctypes); the output shows the Python stack"
_SIGNAL_HINTS = {
    signal.SIGSEGV: _NATIVE,
    signal.SIGBUS: _NATIVE,
    signal.SIGILL: _NATIVE,
    signal.SIGFPE: _NATIVE,
    signal.SIGABRT: "native code aborted, often an allocation that failed under memory_limit_mb",
    signal.SIGKILL: "killed from outside, e.g. by the kernel's out-of-memory killer",
}


def _death(returncode: int, config: AnalysisTaskConfig) -> str:
    """Why a child that sent no reply ended, as the end of a sentence."""
    if returncode >= 0:
        return (
            f"exited with code {returncode} before returning a result "
            "(os._exit() in the script, or Python failed to start: see the output)"
        )
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"was killed by signal {-returncode} before returning a result"
    if sig is signal.SIGXCPU:
        hint = f"it used up its CPU time limit, cpu_limit_s = {config.cpu_limit_s} s"
    else:
        hint = _SIGNAL_HINTS.get(sig, "see the output")
    return f"was killed by signal {sig.name} before returning a result ({hint})"
