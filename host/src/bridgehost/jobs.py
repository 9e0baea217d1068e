"""The data that flows through the host: trigger -> Request -> Job -> Outcome -> reply.

Everything here is a plain value (msgspec Structs and enums) so that any
transport can encode it and any plugin can read it without importing the host.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable


class Status(enum.IntEnum):
    """How a job ended.

    Values 0-4 are epics-bridge's ``TaskStatus`` mbbi states (epics-bridge
    2.1.0, https://pypi.org/project/epics-bridge/: ZRVL..THVL plus Skipped; the mbbi record:
    https://docs.epics-controls.org/en/latest/specs/record_reference.html),
    so the record maps the number directly. The states epics-bridge lacks follow them.
    """

    SUCCESS = 0
    """The task ran and returned its result."""
    TASK_FAIL = 1
    """The task ran and reported a logic failure (an interlock, a bad run)."""
    IO_FAILURE = 2
    """Reading or writing the outside world failed (a PV, a datastore file)."""
    CRASH = 3
    """The task's code raised, or its process died (exit, signal, memory)."""
    SKIPPED = 4
    """The task decided there was nothing to do."""
    TIMEOUT = 5
    """The task exceeded its ``timeout_s`` and was stopped."""
    CANCELLED = 6
    """The job was cancelled: the host stopped before or while it ran."""
    BUSY = 7
    """Refused without running: the task's queue was full. Retry later."""
    REJECTED = 8
    """Refused without running: the request was invalid or named no task."""

    @property
    def ok(self) -> bool:
        return self is Status.SUCCESS


def now_ms() -> int:
    """The current time as integer milliseconds since the Unix epoch (UTC):
    the timecodes of job events and of IPC messages."""
    return time.time_ns() // 1_000_000


def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex digits (a UUID4 without dashes)."""
    return uuid.uuid4().hex


class ReplyLimit(msgspec.Struct, frozen=True):
    """The most bytes of JSON a job's result may take in the reply that
    carries it back (``max_bytes``), and the setting that decides it
    (``setting``, named in errors: ``"max_frame_bytes of transport 'plant'"``).

    A trigger whose replies are bounded (a frame limit) puts one on each
    ``Request`` it makes; the host then ends a job whose result does not fit
    as CRASH before any hook or the trigger sees it, so the job has one
    outcome everywhere, and a task may refuse such a result earlier (the
    analysis task tells its child process)."""

    max_bytes: int
    setting: str


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A request for work, as a trigger hands it to the host.

    ``task`` is the configured task name (what the trigger's message names).
    ``params`` is the task's input (the message's data).
    ``source`` names the trigger (its kind, with a detail such as a PV prefix); ``ref`` is the
    source's own id for the request (a transaction id), carried into
    every log line of the job so both ends can be matched. ``reply_limit``:
    how large a result the trigger's reply can carry (``None``: unbounded).
    """

    task: str
    params: dict[str, Any] = {}
    source: str = ""
    ref: str = ""
    reply_limit: ReplyLimit | None = None
    id: str = msgspec.field(default_factory=new_job_id)


class EventKind(enum.StrEnum):
    """What a job event reports: the progress, locations, duration estimates
    and diagnostics of Automancer's process API
    (https://github.com/slietar/automancer, "Developing processes")."""

    PROGRESS = "progress"
    LOCATION = "location"
    DURATION = "duration"
    """Estimated remaining time, in seconds."""
    DIAGNOSTIC = "diagnostic"
    """An error, warning or effect reported while the job runs."""


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something a running job reports; ``seq`` counts from 1 per job so a
    subscriber sees gaps."""

    job_id: str
    seq: int
    kind: EventKind
    data: Any = None
    timecode_ms: int = 0


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a job ended, as it goes back to the trigger's reply path.

    ``data`` is the task's result on SUCCESS (for an analysis, the dict the
    script returned); on failure it holds details such as ``traceback``. A
    result may still be the JSON it was encoded to (``msgspec.Raw``: an
    analysis's result as its child process encoded it, or any result whose
    size the host measured for a bounded reply): ``decoded_data()`` gives
    the values.
    ``error`` is a one-paragraph human message, empty on SUCCESS.
    ``duration_s`` is wall-clock seconds from start to end of the run (0 for
    a job that never started).
    """

    job_id: str
    task: str
    status: Status
    data: Any = None
    error: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS

    def decoded_data(self) -> Any:
        """``data`` as Python values: decoded if it is encoded JSON
        (``msgspec.Raw``), else as it is. Decodes on every call."""
        return msgspec.json.decode(self.data) if isinstance(self.data, msgspec.Raw) else self.data


class Job:
    """One accepted request while the host runs it.

    Tasks receive the Job: ``job.params`` is their input, ``job.log`` a logger
    whose lines carry the job id and the source's ref, and ``job.emit()``
    reports progress through the ``job_event`` hook.
    """

    def __init__(self, request: Request, emit: Callable[[Job, JobEvent], None] | None = None):
        self.request = request
        self.id = request.id
        self.started_at: float | None = None  # time.monotonic() when it began running
        self.wanted: Callable[[], bool] | None = None
        """Asked before a queued job starts; False withdraws it (``Host.submit``)."""
        # One logger for all jobs: a logger per requested task name would be
        # cached forever, and requests may name any task.
        self.log = logging.LoggerAdapter(
            logging.getLogger("bridgehost.job"), {"job_id": request.id, "task": request.task, "ref": request.ref}
        )
        self._emit = emit
        self._seq = 0

    @property
    def task(self) -> str:
        return self.request.task

    @property
    def params(self) -> dict[str, Any]:
        return self.request.params

    def emit(self, kind: EventKind, data: Any = None) -> JobEvent:
        """Report an event of this job to every plugin's ``job_event`` hook."""
        self._seq += 1
        event = JobEvent(
            job_id=self.id, seq=self._seq, kind=kind, data=data, timecode_ms=now_ms()
        )
        if self._emit is not None:
            self._emit(self, event)
        return event

    def __repr__(self) -> str:
        return f"<Job {self.id} task={self.task!r} source={self.request.source!r} ref={self.request.ref!r}>"
