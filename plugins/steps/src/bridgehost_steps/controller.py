"""``StepsController``: the steps jobs of one host, addressed by job id.

This is the Python control API every binding uses: the ZeroMQ topics
(``bridgehost_steps.control``) and the EPICS PVs (``bridgehost_epics.steps``,
in bridgehost-epics) are thin adapters that
turn a message or a PV put into one of these calls and its ``Answer`` into a
reply::

    controller = StepsController.of(host)
    answer = controller.pause(job_id)        # Answer(accepted=..., reason=...)
    controller.subscribe(listener)           # every announcement, in order

Call everything on the host's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from bridgehost.errors import InvalidRequest
from bridgehost.jobs import Outcome, Request
from bridgehost_steps.machine import ENDED, Answer, Control
from bridgehost_steps.run import Run
from bridgehost_steps.run_types import RunStatus, Topic

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.jobs import JobEvent

log = logging.getLogger("bridgehost.steps")

HISTORY = 1000
"""Ended jobs whose final status ``status()`` still reports."""
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
TOPIC_PREFIX = "steps."


class Announcement(msgspec.Struct, frozen=True, kw_only=True):
    """What listeners receive and ZeroMQ broadcasts: ``topic`` is
    ``steps.state`` / ``.location`` / ``.duration`` / ``.analysis`` /
    ``.pausable``; ``data`` holds ``job_id``, ``task``, ``seq`` (per job,
    from 1, gapless), ``timecode_ms``, ``state`` and the topic's fields."""

    topic: str
    data: dict[str, Any]


Listener = Callable[[Announcement], None]


class StepsController:
    """Registry of the running steps jobs of one host, and their control."""

    def __init__(self, host: Host):
        self.host = host
        self.runs: dict[str, Run] = {}
        self.queued: dict[str, str] = {}
        """Jobs started with ``start()`` that wait in their lane: id -> task."""
        self.history: collections.OrderedDict[str, RunStatus] = collections.OrderedDict()
        self._listeners: list[Listener] = []
        self._transports: list[Any] = []
        self.routed: list[Any] = []
        """Transports whose ``steps.*`` topics come here (``control.attach``)."""
        self._outbox: asyncio.Queue[Announcement] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._users = 0

    @classmethod
    def of(cls, host: Host) -> StepsController:
        """The controller of ``host``: its plugin state slot
        (``host.plugin_state``), created on first use."""
        return host.plugin_state(cls)

    # -- runs --------------------------------------------------------------

    def add(self, run: Run) -> None:
        self.queued.pop(run.id, None)
        self.runs[run.id] = run

    def remove(self, run: Run) -> None:
        self.runs.pop(run.id, None)
        self.history[run.id] = run.status()
        while len(self.history) > HISTORY:
            self.history.popitem(last=False)

    def sink(self, run: Run, topic: Topic, event: JobEvent) -> None:
        """Where a run's announcements go: listeners now, transports in order."""
        data = dict(event.data)
        del data["topic"]
        announcement = Announcement(
            topic=TOPIC_PREFIX + topic.value,
            data={"job_id": run.id, "task": run.task, "seq": event.seq, "timecode_ms": event.timecode_ms, **data},
        )
        for listener in list(self._listeners):
            try:
                listener(announcement)
            except Exception:
                log.exception("steps listener %r raised", listener)
        if self._outbox is not None:
            self._outbox.put_nowait(announcement)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(announcement)`` for every announcement of every
        job, in order, on the loop; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- broadcasting ----------------------------------------------------------

    def broadcast_to(self, transport: Any) -> None:
        """Also broadcast every announcement on ``transport`` (an object with
        ``async broadcast(topic, data)``, such as bridgehost-ipc's zmq transport)."""
        if transport not in self._transports:
            self._transports.append(transport)

    def acquire(self) -> None:
        """A steps task started: make sure announcements are sent (one sender
        task, so they leave in order)."""
        self._users += 1
        if self._sender is None:
            self._outbox = asyncio.Queue()
            self._sender = asyncio.create_task(self._send_loop(self._outbox), name="steps-broadcast")

    async def release(self) -> None:
        """A steps task stopped; the last one flushes and stops the sender."""
        self._users -= 1
        if self._users <= 0 and self._sender is not None:
            sender, outbox = self._sender, self._outbox
            self._sender = self._outbox = None
            assert outbox is not None
            outbox.put_nowait(_STOP)
            await asyncio.wait((sender,), timeout=2.0)
            sender.cancel()

    async def _send_loop(self, outbox: asyncio.Queue[Announcement]) -> None:
        while (announcement := await outbox.get()) is not _STOP:
            for transport in self._transports:
                try:
                    await transport.broadcast(announcement.topic, announcement.data)
                except Exception:
                    log.exception("steps: broadcast of %s on %r failed", announcement.topic, transport)

    # -- control API -------------------------------------------------------

    def control(self, job_id: str, control: Control, **kwargs: Any) -> Answer:
        """Send ``control`` to job ``job_id``; see the named methods."""
        run = self.runs.get(job_id)
        if run is None:
            return Answer.refused(job_id, control.value, self.unknown_reason(job_id))
        return run.control(control, **kwargs)

    def pause(self, job_id: str) -> Answer:
        """Pause at the process's next ``checkpoint()``/``wait()``; refused
        "not pausable" unless it set ``context.pausable = True``."""
        return self.control(job_id, Control.PAUSE)

    def resume(self, job_id: str) -> Answer:
        """Resume a paused job, or withdraw a pause not yet taken."""
        return self.control(job_id, Control.RESUME)

    def halt(self, job_id: str) -> Answer:
        """Cancel the process; its cleanup runs (at most ``halt_timeout_s``);
        the job ends HALTED (``Status.CANCELLED``)."""
        return self.control(job_id, Control.HALT)

    def jump(self, job_id: str, point: Any) -> Answer:
        """Move to ``point`` (a sequence: ``{"step": index or name, "point": ...}``)."""
        return self.control(job_id, Control.JUMP, point=point)

    def swap(self, job_id: str, data: Any) -> Answer:
        """Replace the (current step's) process data by ``data``."""
        return self.control(job_id, Control.SWAP, data=data)

    def retry(self, job_id: str, **changes: Any) -> Answer:
        """Re-create a failed process; ``data=`` / ``point=`` replace its own."""
        extra = {"has_data": "data" in changes, "has_point": "point" in changes}
        return self.control(job_id, Control.RETRY, **changes, **extra)

    def skip(self, job_id: str) -> Answer:
        """Give up a failed process: a step ends SKIPPED, a sequence goes on."""
        return self.control(job_id, Control.SKIP)

    def send(self, job_id: str, message: Any) -> Answer:
        """Queue ``message`` for the process's ``context.receive()``; refused
        when the process already has its task's ``inbox_size`` messages
        waiting (it does not receive them): a sender cannot make a job hold
        more."""
        run = self.runs.get(job_id)
        if run is None:
            return Answer.refused(job_id, "send", self.unknown_reason(job_id))
        if run.state.final:
            return Answer.refused(job_id, "send", ENDED.format(state=run.state.value), run.state)
        if run.inbox.full():
            reason = (f"the process has {run.inbox.qsize()} messages it has not received (inbox_size = "
                      f"{run.inbox.maxsize} of task {run.task!r}): this one is refused; send it again once the "
                      "process calls context.receive()")
            return Answer.refused(job_id, "send", reason, run.state)
        run.inbox.put_nowait(message)
        return Answer(job_id=job_id, control="send", accepted=True, state=run.state.value)

    def status(self, job_id: str) -> RunStatus | None:
        """The job's snapshot (running, or among the last ``HISTORY`` ended), else None."""
        run = self.runs.get(job_id)
        if run is not None:
            return run.status()
        return self.history.get(job_id)

    def list(self, *, ended: bool = False) -> list[RunStatus]:
        """Snapshots of the running jobs (and the remembered ended ones)."""
        statuses = [run.status() for run in self.runs.values()]
        return statuses + list(self.history.values()) if ended else statuses

    def start(
        self, task: str, *, data: Any = None, point: Any = None, job_id: str | None = None, source: str = "steps", ref: str = ""
    ) -> tuple[Answer, asyncio.Future[Outcome] | None]:
        """Submit a job of steps task ``task`` through ``host.submit`` (so its
        lane, timeout and lifecycle hooks apply). Returns the answer at once
        (state ``running`` or ``queued``) and the future of its outcome;
        refused (future None) for an unknown or non-steps task, a bad or
        taken ``job_id``, data or a point the steps' types reject (msgspec's
        message; nothing runs and the id stays free), or a job the host
        refused at once (BUSY)."""
        from bridgehost_steps.task import StepsTask

        lane = self.host.lanes.get(task)
        if lane is None or not isinstance(lane.impl, StepsTask):
            steps = sorted(n for n, lane in self.host.lanes.items() if isinstance(lane.impl, StepsTask))
            what = "no task" if lane is None else "not a step or sequence task:"
            return Answer.refused(job_id or "", "start", f"{what} {task!r} (steps tasks: {', '.join(steps) or 'none'})"), None
        if job_id is not None:
            if not isinstance(job_id, str) or not JOB_ID.match(job_id):
                reason = f"job_id {job_id!r} is not 1-64 characters of letters, digits, '.', '_', ':' or '-'"
                return Answer.refused(str(job_id), "start", reason), None
            if job_id in self.runs or job_id in self.queued or job_id in self.history:
                return Answer.refused(job_id, "start", f"job_id {job_id!r} is already used; pick another"), None
        params: dict[str, Any] = {}
        if data is not None:
            params["data"] = data
        if point is not None:
            params["point"] = point
        try:
            lane.impl.prepare(params)  # the job's run() does it again; here it is only checked, before the answer
        except InvalidRequest as e:
            return Answer.refused(job_id or "", "start", str(e)), None
        fields: dict[str, Any] = {"id": job_id} if job_id else {}
        request = Request(task=task, params=params, source=source, ref=ref, **fields)
        future = self.host.submit(request)
        if future.done():
            outcome = future.result()
            return Answer.refused(request.id, "start", outcome.error or outcome.status.name), future
        state = "running" if request.id in lane.running else "queued"
        if state == "queued":
            self.queued[request.id] = task
            future.add_done_callback(lambda _f: self.queued.pop(request.id, None))
        return Answer(job_id=request.id, control="start", accepted=True, state=state), future

    def unknown_reason(self, job_id: str) -> str:
        if job_id in self.queued:
            return f"job {job_id!r} is queued and has not started; it can be controlled once it runs"
        if job_id in self.history:
            return ENDED.format(state=self.history[job_id].state)
        return f"no steps job {job_id!r} is running; steps.list lists them"


_STOP: Any = object()

