"""What a host is doing now, as plain values: ``Host.status()`` builds a
``HostStatus``; a transport's status request sends it as JSON, and the
commands that plugins add show it.

Every collection here is bounded: one entry per configured task and
component, the running jobs (at most the sum of the tasks' ``concurrency``),
and the last ``RECENT_FAILURES`` failures.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

RECENT_FAILURES = 10
"""How many failed jobs ``HostStatus.failures`` keeps, newest last."""


class RefusalCause(enum.StrEnum):
    """Why a request was answered without running (BUSY or REJECTED), the
    ``cause`` label of ``bridgehost_requests_refused_total``."""

    QUEUE_FULL = "queue_full"
    """The task's queue was full (BUSY)."""
    IN_FLIGHT_LIMIT = "in_flight_limit"
    """A transport had its maximum of requests in flight (BUSY: the transport's cap on requests in flight)."""
    STOPPING = "stopping"
    """The host was not running: starting or stopping (REJECTED)."""
    UNKNOWN_TASK = "unknown_task"
    """The request named no configured task (REJECTED)."""


class TaskState(msgspec.Struct, kw_only=True):
    """One configured task: ``running`` and ``queued`` jobs now, its limits,
    and ``finished``, the count of jobs ended since the host started by
    ``Status`` name (``{"SUCCESS": 12, "CRASH": 1}``; BUSY and REJECTED
    refusals included)."""

    name: str
    kind: str
    running: int
    queued: int
    concurrency: int
    queue_size: int
    finished: dict[str, int]


class RunningJob(msgspec.Struct, kw_only=True):
    """A job running now; ``elapsed_s`` since it left its queue."""

    job_id: str
    task: str
    source: str
    ref: str
    elapsed_s: float


class Failure(msgspec.Struct, kw_only=True):
    """A job that ended other than SUCCESS: when (``ended_at``, Unix time,
    seconds), its ``Status`` name and the first line of its error."""

    job_id: str
    task: str
    source: str
    status: str
    error: str
    ended_at: float


class ComponentState(msgspec.Struct, kw_only=True):
    """A configured component (``section`` ``transports``, ``index`` 0...,
    ``kind`` as configured). ``state`` and ``details`` are what its optional
    ``status()`` method returned (``state`` taken out of it), else the
    host's state and ``{}``."""

    section: str
    index: int
    kind: str
    name: str
    state: str
    details: dict[str, Any] = {}


class HostStatus(msgspec.Struct, kw_only=True):
    """The whole picture: ``state`` is ``new``, ``running``, ``stopping`` or
    ``stopped``; ``started_at`` Unix time in seconds (0 before start);
    ``refused`` counts refusals by ``RefusalCause`` value."""

    name: str
    version: str
    state: str
    started_at: float
    uptime_s: float
    tasks: list[TaskState]
    running: list[RunningJob]
    failures: list[Failure]
    components: list[ComponentState]
    refused: dict[str, int]


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "\u2026"
    return ""
