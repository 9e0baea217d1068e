"""The Host: builds the configured components, dispatches requests to tasks
on one asyncio loop, and shuts down without dropping an accepted request.

Flow of one job: a trigger calls ``host.submit(Request)`` -> the task's lane
(a bounded FIFO in front of ``concurrency`` running slots) -> ``task.run(job)``
under ``asyncio.timeout(timeout_s)`` -> an ``Outcome`` -> the lifecycle hooks
-> the future the trigger awaits, which carries the reply back.

Every submit resolves to exactly one Outcome: a request is never silently
dropped. A full queue answers BUSY; an unknown task or a stopping host
answers REJECTED; on shutdown queued jobs answer CANCELLED and running ones
get ``shutdown_grace_s`` to finish before they are cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import gc
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from bridgehost.components import Checkable, ReplyBounded, ResultBounded, Runnable
from bridgehost.config import ComponentConfig, Config, TaskConfig, load
from bridgehost.errors import BridgehostError, ConfigError, InvalidField, JobError, TaskCrashed
from bridgehost.jobs import Job, JobEvent, Outcome, ReplyLimit, Request, Status
from bridgehost.liveness import Liveness
from bridgehost.logs import RateLimitedLog, current_job
from bridgehost.plugins import Plugins
from bridgehost.registry import Kind
from bridgehost.status import (
    RECENT_FAILURES,
    ComponentState,
    Failure,
    HostStatus,
    RefusalCause,
    RunningJob,
    TaskState,
    first_line,
)
from bridgehost.text import cut_middle

log = logging.getLogger(__name__)
S = TypeVar("S")


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""The signals ``Host.serve`` stops on (SIGHUP: the terminal closed; no
reload is implied)."""


class HostState(enum.StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class StartError(BridgehostError):
    """A component failed to start (an endpoint in use, a server down).
    Components started before it have been stopped again."""


@dataclass
class Component:
    """A built component and where it came from in the config."""

    kind: Kind
    index: int
    config: ComponentConfig
    impl: Any

    @property
    def label(self) -> str:
        return f"{self.kind.section}[{self.index}] ({self.config.kind})"


class Host:
    """Runs the components a ``Config`` selects, from the kinds ``plugins`` registered.

    Building (``Host(config, plugins)``) instantiates every component and
    raises ``ConfigError`` for a kind that is missing or a field a factory
    rejects, so ``bridgehost check`` can build without starting.
    Components are built and started in the order tasks, watchdogs,
    transports, triggers, so each can look up those before it (a trigger
    finds its transport in ``host.transports``), and stopped in reverse.
    """

    def __init__(self, config: Config, plugins: Plugins):
        self.config = config
        self.plugins = plugins
        self.name = config.host.name
        self.liveness = Liveness()
        self.state = HostState.NEW
        self.components: list[Component] = []
        self.transports: dict[str, Any] = {}
        """Built transports by name (``name`` or else ``kind``)."""
        self.refusal_lines = RateLimitedLog(logging.getLogger("bridgehost.job"))
        """Log lines of refused requests (BUSY, REJECTED): one per cause and task per interval."""
        self.lanes: dict[str, TaskLane] = {}
        """One lane per configured task, by task name."""
        self.started_at = 0.0
        """Unix time (s) the host began accepting requests; 0 before."""
        self.refused: collections.Counter[RefusalCause] = collections.Counter()
        """Requests answered without running, by cause, since start (``note_refusal``)."""
        self.failures: collections.deque[Failure] = collections.deque(maxlen=RECENT_FAILURES)
        """The last few jobs that ended other than SUCCESS, newest last."""
        self._started_mono = 0.0
        self._stop_requested: asyncio.Event | None = None
        self._plugin_states: dict[type, Any] = {}
        self._signals = 0
        self._liveness_task: asyncio.Task[None] | None = None

        for i, cfg in enumerate(config.tasks):
            impl = self._build(Kind.TASK, i, cfg).impl
            self.lanes[cfg.name] = TaskLane(self, cfg, impl)
        for i, watchdog in enumerate(config.watchdogs):
            self._build(Kind.WATCHDOG, i, watchdog)
        for i, transport in enumerate(config.transports):
            self.transports[transport.name or transport.kind] = self._build(Kind.TRANSPORT, i, transport).impl
        for i, trigger in enumerate(config.triggers):
            self._build(Kind.TRIGGER, i, trigger)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Host:
        """A host built from the config file at ``path``, with the plugins its
        ``[plugins]`` table selects. Raises ConfigError."""
        return cls(*load(path))

    def _build(self, kind: Kind, index: int, cfg: ComponentConfig) -> Component:
        key = f"{kind.section}[{index}]"
        entry = self.plugins.registry(kind).get(cfg.kind, source=self.config.source, key=f"{key}.kind")
        try:
            impl = entry.factory(cfg, self)
        except ConfigError:
            raise
        except InvalidField as e:
            raise ConfigError(self.config.source, f"{key}.{e.field}", e.message, e.hint) from e
        except Exception as e:
            raise ConfigError(
                self.config.source,
                key,
                f"cannot build {kind.value} {cfg.kind!r} (plugin {entry.plugin!r}): {type(e).__name__}: {e}",
            ) from e
        component = Component(kind, index, cfg, impl)
        self.components.append(component)
        return component

    def warnings(self) -> list[str]:
        """What is worth a warning before starting: a config with nothing to
        do, then each component's ``check()``, as ``"label: text"``.
        ``bridgehost check`` prints these and ``start()`` logs each as a
        WARNING: one list, so the two always agree."""
        found = []
        if not self.lanes:
            found.append("the config has no [[tasks]]: the host has nothing to run (add a [[tasks]] table)")
        elif not self.config.triggers and not self.config.transports:
            found.append(
                "the config has no [[triggers]] and no [[transports]]: nothing can request its tasks "
                "(add a [[transports]] and a [[triggers]] table; `bridgehost plugins` lists the kinds installed)"
            )
        for component in self.components:
            if isinstance(component.impl, Checkable):
                found.extend(f"{component.label}: {warning}" for warning in component.impl.check())
        found.extend(self._reply_limit_warnings())
        return found

    def _reply_limit_warnings(self) -> list[str]:
        """A task whose results may be larger than a reply of a trigger that
        serves it can carry: such a result would end CRASH."""
        found = []
        for trigger in self.components:
            if trigger.kind is not Kind.TRIGGER or not isinstance(trigger.impl, ReplyBounded):
                continue
            for name, lane in self.lanes.items():
                limit = trigger.impl.reply_limit(name)
                if limit is None or not isinstance(lane.impl, ResultBounded):
                    continue
                if lane.impl.max_result_bytes > limit.max_bytes:
                    found.append(
                        f"task {name!r}: max_result_bytes ({lane.impl.max_result_bytes}) is over the "
                        f"{limit.max_bytes} bytes a reply of {trigger.label} can carry ({limit.setting}): "
                        f"a larger result ends CRASH; lower max_result_bytes to at most {limit.max_bytes}, "
                        f"or raise {limit.setting}"
                    )
        return found

    def path(self, value: str | os.PathLike[str]) -> Path:
        """A path from the config (``~`` expanded) made absolute against the
        config file's folder, so a deployment moves as one folder. Builds no
        file and checks nothing."""
        return self.config.base_dir / Path(value).expanduser()

    def plugin_state(self, cls: type[S]) -> S:
        """The one ``cls`` instance of this host: a plugin's own state (a
        controller, a catalog, counters), created as ``cls(host)`` on first
        use. Keyed by the class, so plugins never collide and nothing is
        set on the host's attributes."""
        state = self._plugin_states.get(cls)
        if state is None:
            state = self._plugin_states[cls] = cls(self)  # type: ignore[call-arg]
        return state

    def task_names(self) -> list[str]:
        """The configured task names, which requests select."""
        return sorted(self.lanes)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Log ``warnings()``, start every component, then accept requests.

        Raises ``StartError`` (after stopping what had started) if a
        component's ``start()`` raises.
        """
        if self.state is not HostState.NEW:
            raise RuntimeError(f"host {self.name!r} cannot start: it is {self.state}")
        for warning in self.warnings():
            log.warning("%s", warning)
        self._stop_requested = asyncio.Event()
        self._liveness_task = asyncio.create_task(self.liveness.run(), name="bridgehost-liveness")
        started: list[Component] = []
        for component in self.components:
            try:
                await _call_optional(component.impl, "start")
            except Exception as e:
                for done in reversed(started):
                    await self._stop_component(done)
                self._liveness_task.cancel()
                self.state = HostState.STOPPED
                raise StartError(f"cannot start {component.label}: {type(e).__name__}: {e}") from e
            started.append(component)
        # What start-up made (modules, plugins, the components' clients) lives
        # as long as the host: collected once and frozen (the gc.freeze docs),
        # a full collection no longer walks it. Before, one took 30-110 ms
        # every few seconds under EPICS triggering, the first right after ready.
        gc.collect()
        gc.freeze()
        self.state = HostState.RUNNING
        self.started_at, self._started_mono = time.time(), time.monotonic()
        log.info("host %r running: tasks %s", self.name, ", ".join(self.task_names()) or "none")
        self.notify("host_started", host=self)

    def request_stop(self) -> None:
        """Ask ``serve()`` to shut down (what SIGTERM, SIGINT and SIGHUP do)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def serve(self) -> None:
        """Start, run until SIGTERM, SIGINT or SIGHUP (or ``request_stop()``),
        then stop.

        SIGHUP (the terminal closed) is a stop like SIGTERM: logged, and every
        accepted request answered. A second signal during shutdown skips the
        rest of the grace period.
        """
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            assert self._stop_requested is not None
            await self._stop_requested.wait()
        finally:
            await self.stop()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s: stopping (send again to cancel running jobs now)", sig.name)
            self.request_stop()
        else:
            log.warning("%s again: cancelling running jobs now", sig.name)
            for lane in self.lanes.values():
                lane.cancel_running()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, settle every accepted request, stop the components.

        From the first moment ``submit`` answers REJECTED. Queued jobs end
        CANCELLED at once; running jobs get ``grace_s`` (default ``[host]
        shutdown_grace_s``) seconds, then are cancelled and end CANCELLED.
        Only then are the components stopped, triggers first: every accepted
        request's outcome reaches its trigger while the trigger and the
        transports still run, so its reply (an IPC response, TaskStatus and
        Busy=0 on the PVs) can still be sent.
        """
        if self.state in (HostState.STOPPING, HostState.STOPPED):
            return
        self.state = HostState.STOPPING
        grace = self.config.host.shutdown_grace_s if grace_s is None else grace_s
        log.info("host %r stopping (grace %.1f s)", self.name, grace)
        self.notify("host_stopping", host=self)
        for lane in self.lanes.values():
            lane.cancel_waiting("the host stopped before the job started")
        running = [t for lane in self.lanes.values() for t in lane.running.values()]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            if pending:
                log.warning("%d job(s) still running after %.1f s grace: cancelling", len(pending), grace)
                for lane in self.lanes.values():
                    lane.cancel_running()
                await asyncio.wait(pending)
        for component in reversed(self.components):  # triggers were built last
            await self._stop_component(component)
        if self._liveness_task is not None:
            self._liveness_task.cancel()
        self.refusal_lines.flush()
        self.state = HostState.STOPPED
        gc.unfreeze()  # what start froze can be collected again once the host is gone (a process may run several)
        log.info("host %r stopped", self.name)

    async def _stop_component(self, component: Component) -> None:
        try:
            await _call_optional(component.impl, "stop")
        except Exception:
            log.exception("error stopping %s", component.label)

    # -- requests ----------------------------------------------------------

    def submit(self, request: Request, *, wanted: Callable[[], bool] | None = None) -> asyncio.Future[Outcome]:
        """Hand a request to its task; call on the host's loop.

        Returns a future that always resolves to an ``Outcome``: the job's,
        or at once BUSY (the task's queue is full) or REJECTED (no such task,
        or the host is not running). Never raises for a bad request.
        Cancelling the future withdraws the request (a trigger whose client
        went away): a job still queued is never started and ends CANCELLED
        (logged, ``job_finished``); a running job runs to its end.
        ``wanted``, if given, is asked right before a queued job starts; False
        withdraws it the same way (a client that left a moment ago).
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        job = Job(request, emit=self._emit)
        job.wanted = wanted
        if self.state is not HostState.RUNNING:
            self.settle(
                job,
                future,
                Status.REJECTED,
                f"host {self.name!r} is not running ({self.state}); the request was not run",
                refused=RefusalCause.STOPPING,
            )
            return future
        lane = self.lanes.get(request.task)
        if lane is None:
            tasks = ", ".join(self.task_names()) or "none"
            self.settle(
                job,
                future,
                Status.REJECTED,
                f"no task named {request.task!r} on host {self.name!r} (tasks: {tasks})",
                refused=RefusalCause.UNKNOWN_TASK,
            )
            return future
        lane.offer(job, future)
        return future

    def settle(
        self,
        job: Job,
        future: asyncio.Future[Outcome],
        status: Status,
        error: str = "",
        data: Any = None,
        duration_s: float = 0.0,
        *,
        refused: RefusalCause | None = None,
    ) -> Outcome:
        """End ``job`` with an Outcome: log it, count it (``status()``), call
        ``job_finished``, resolve ``future``. The one place a job ends, so
        each ends exactly once. ``refused`` says why a job that never ran was
        refused (BUSY, REJECTED)."""
        outcome = Outcome(job_id=job.id, task=job.task, status=status, data=data, error=error, duration_s=duration_s)
        lane = self.lanes.get(job.task)
        if lane is not None:  # an unknown task name is no label: it is counted only as a refusal
            lane.finished[status] += 1
        if refused is not None:
            self.refused[refused] += 1
        if not outcome.ok:
            self.failures.append(
                Failure(
                    job_id=job.id,
                    task=job.task if lane is not None else cut_middle(job.task, 80),
                    source=job.request.source,
                    status=status.name,
                    error=first_line(error),
                    ended_at=time.time(),
                )
            )
        level = logging.INFO if status is Status.SUCCESS else logging.WARNING
        ran = f" in {duration_s:.3f} s" if job.started_at is not None else " without running"
        shown = cut_middle(error, _LOGGED_ERROR_CHARS)
        if refused is None:
            job.log.log(level, "%s%s%s", status.name, ran, f": {shown}" if error else "")
        else:  # a flood of BUSY or of unknown tasks: one line per cause and task per interval
            cause = (refused.value, job.task if lane is not None else None)
            self.refusal_lines.log(level, cause, "%s%s%s", status.name, ran, f": {shown}", logger=job.log)
        self.notify("job_finished", job=job, outcome=outcome)
        if not future.done():
            future.set_result(outcome)
        return outcome

    def note_refusal(self, cause: RefusalCause) -> None:
        """Count a request a transport answered itself without passing it to
        the host (a cap on its requests in flight), so ``status()`` and the
        metrics show every refusal. Call on the host's loop."""
        self.refused[cause] += 1

    def uptime_s(self) -> float:
        """Seconds since the host began accepting requests (0 before start)."""
        return time.monotonic() - self._started_mono if self.started_at else 0.0

    def status(self) -> HostStatus:
        """What the host is doing now (``bridgehost.status``); call on the
        host's loop. A component's optional ``status() -> dict`` gives its
        ``state`` and details (a ``state`` key, else the host's state); one
        that raises shows state ``error`` and the exception."""
        now = time.monotonic()
        tasks, running = [], []
        for name in self.task_names():
            lane = self.lanes[name]
            cfg = lane.config
            tasks.append(
                TaskState(
                    name=name,
                    kind=cfg.kind,
                    running=len(lane.running),
                    queued=len(lane.waiting),
                    concurrency=cfg.concurrency,
                    queue_size=cfg.queue_size,
                    finished={status.name: n for status, n in sorted(lane.finished.items())},
                )
            )
            for job in lane.jobs.values():
                started = job.started_at if job.started_at is not None else now
                running.append(
                    RunningJob(
                        job_id=job.id, task=name, source=job.request.source, ref=job.request.ref, elapsed_s=now - started
                    )
                )
        components = []
        for c in self.components:
            details: dict[str, Any] = {}
            state = str(self.state)
            reporter = getattr(c.impl, "status", None)
            if callable(reporter):
                try:
                    details = dict(reporter() or {})
                    state = str(details.pop("state", state))
                except Exception as e:
                    state, details = "error", {"error": f"{type(e).__name__}: {e}"}
            components.append(
                ComponentState(
                    section=c.kind.section,
                    index=c.index,
                    kind=c.config.kind,
                    name=getattr(c.config, "name", "") or "",
                    state=state,
                    details=details,
                )
            )
        return HostStatus(
            name=self.name,
            version=_version(),
            state=str(self.state),
            started_at=self.started_at,
            uptime_s=self.uptime_s(),
            tasks=tasks,
            running=running,
            failures=list(self.failures),
            components=components,
            refused={cause.value: n for cause, n in sorted(self.refused.items())},
        )

    def _emit(self, job: Job, event: JobEvent) -> None:
        self.notify("job_event", job=job, event=event)

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin, each isolated: one that
        raises is logged and the others still run. Called impl by impl, in
        pluggy's order, because pluggy's own call stops at the first error;
        wrappers make no sense for notifications and are refused at load."""
        for impl in reversed(getattr(self.plugins.hook, hook).get_hookimpls()):
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                log.exception("plugin %r raised in %s", impl.plugin_name, hook)


class TaskLane:
    """One configured task: its implementation, a bounded FIFO of waiting
    jobs and up to ``concurrency`` running ones.

    A lane per task (not one queue for the host) so a slow task cannot make
    another task's requests BUSY.
    """

    def __init__(self, host: Host, config: TaskConfig, impl: Runnable):
        self.host = host
        self.config = config
        self.impl = impl
        self.waiting: collections.deque[tuple[Job, asyncio.Future[Outcome]]] = collections.deque()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.jobs: dict[str, Job] = {}
        """The running jobs by id (the same keys as ``running``)."""
        self.finished: collections.Counter[Status] = collections.Counter()
        """Jobs of this task ended since the host started, by status."""

    def offer(self, job: Job, future: asyncio.Future[Outcome]) -> None:
        if len(self.running) < self.config.concurrency:
            self._start(job, future)
        elif len(self.waiting) < self.config.queue_size:
            self.waiting.append((job, future))
            future.add_done_callback(lambda f: self._withdraw(job, f) if f.cancelled() else None)
            job.log.debug("queued (%d waiting)", len(self.waiting))
        else:
            self.host.settle(
                job,
                future,
                Status.BUSY,
                f"busy: task {self.config.name!r} is running {len(self.running)} job(s) and its queue of "
                f"{self.config.queue_size} is full; retry later",
                refused=RefusalCause.QUEUE_FULL,
            )

    def _start(self, job: Job, future: asyncio.Future[Outcome]) -> None:
        task = asyncio.create_task(self._execute(job, future), name=f"job-{job.id}")
        self.running[job.id] = task
        self.jobs[job.id] = job
        task.add_done_callback(lambda _t: self._done(job.id))

    def _done(self, job_id: str) -> None:
        self.running.pop(job_id, None)
        self.jobs.pop(job_id, None)
        while self.waiting and self.host.state is HostState.RUNNING:
            job, future = self.waiting.popleft()
            if future.cancelled() or (job.wanted is not None and not job.wanted()):
                self._withdraw(job, future, queued=False)  # its requester left a moment ago
                continue
            self._start(job, future)
            break

    def _withdraw(self, job: Job, future: asyncio.Future[Outcome], *, queued: bool = True) -> None:
        """The requester cancelled ``future`` (its client went away): a job
        still waiting is never started and ends CANCELLED; a running one
        runs to its end."""
        if queued:
            try:
                self.waiting.remove((job, future))
            except ValueError:
                return  # already started, or already settled
        self.host.settle(job, future, Status.CANCELLED, "cancelled: the request was withdrawn before it started")

    async def _execute(self, job: Job, future: asyncio.Future[Outcome]) -> None:
        current_job.set(job)  # this asyncio task's context: every log line of the job names it
        job.started_at = time.monotonic()
        self.host.notify("job_started", job=job)
        status, error = Status.SUCCESS, ""
        data: Any = None
        limit = self.config.timeout_s
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                result = await self.impl.run(job)
            if isinstance(result, Status):
                status = result
                if not status.ok:
                    error = f"task {self.config.name!r} returned {status.name}"
            elif job.request.reply_limit is not None:
                data = _fit_reply(result, job.request.reply_limit, self.config.name)
            else:
                data = result
        except TimeoutError as e:
            if deadline.expired():
                status, error = Status.TIMEOUT, f"task {self.config.name!r} exceeded its timeout_s of {limit} s and was stopped"
            else:
                status, error, data = _crash(e)
        except JobError as e:
            status, error, data = e.status, str(e), e.data or None
        except asyncio.CancelledError:
            # Only the host cancels job tasks (shutdown); the job still gets its answer.
            status, error = Status.CANCELLED, "cancelled: the host stopped while the job ran"
        except (Exception, SystemExit) as e:
            status, error, data = _crash(e)
        duration = time.monotonic() - job.started_at
        self.host.settle(job, future, status, error, data, duration)

    def cancel_waiting(self, reason: str) -> None:
        while self.waiting:
            job, future = self.waiting.popleft()
            self.host.settle(job, future, Status.CANCELLED, f"cancelled: {reason}")

    def cancel_running(self) -> None:
        for task in self.running.values():
            task.cancel()


_LOGGED_ERROR_CHARS = 4096
"""A job's error is cut to this in its log line: a script may raise a 10 MB message."""


def _version() -> str:
    import bridgehost

    return bridgehost.__version__


def _fit_reply(result: Any, limit: ReplyLimit, task: str) -> msgspec.Raw:
    """``result`` as the JSON its reply will carry, encoded once (a
    ``msgspec.Raw`` passes as it is). Raises ``TaskCrashed`` if it is not
    JSON or larger than ``limit``: decided here, before ``job_finished`` and
    the reply, so the job has one outcome everywhere."""
    if isinstance(result, msgspec.Raw):
        raw = result
    else:
        try:
            raw = msgspec.Raw(msgspec.json.encode(result))
        except (TypeError, ValueError, msgspec.EncodeError) as e:
            raise TaskCrashed(f"task {task!r} returned a result that is not JSON: {e}") from None
    if len(raw) > limit.max_bytes:
        raise TaskCrashed(
            f"task {task!r} returned {len(raw)} bytes of JSON, over the {limit.max_bytes} bytes its reply can "
            f"carry ({limit.setting}): return less (e.g. a file path instead of the data), or raise {limit.setting}"
        )
    return raw


def _crash(e: BaseException) -> tuple[Status, str, dict[str, str]]:
    return Status.CRASH, f"{type(e).__name__}: {e}", {"traceback": "".join(traceback.format_exception(e))}


async def _call_optional(obj: Any, method: str) -> None:
    fn = getattr(obj, method, None)
    if fn is not None:
        result = fn()
        if asyncio.iscoroutine(result):
            await result
