"""The value types of a steps run (``bridgehost_steps.run``): its program
(``ProgramStep``, and ``parse_point`` for a sequence's points), its
``Limits``, a ``Change`` accepted but not yet delivered, the ``Topic`` of an
announcement, the ``RunStatus`` snapshot ``steps.status`` returns, and
``Refused``, raised by a guard of a control request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgspec

from bridgehost.jobs import EventKind
from bridgehost_steps.steps import StepDef


class Topic(enum.StrEnum):
    """What an announcement is about; broadcast as ``steps.<value>``."""

    STATE = "state"
    LOCATION = "location"
    DURATION = "duration"
    ANALYSIS = "analysis"
    PAUSABLE = "pausable"

    @property
    def event_kind(self) -> EventKind:
        return _KINDS[self]


_KINDS = {
    Topic.STATE: EventKind.PROGRESS,
    Topic.LOCATION: EventKind.LOCATION,
    Topic.DURATION: EventKind.DURATION,
    Topic.ANALYSIS: EventKind.DIAGNOSTIC,
    Topic.PAUSABLE: EventKind.PROGRESS,
}


@dataclass(frozen=True)
class ProgramStep:
    """One entry of a program: the step, its name in the sequence, its data."""

    name: str
    step: StepDef
    data: Any


@dataclass(frozen=True)
class Limits:
    recovery_timeout_s: float
    """How long a failed process waits for retry, skip or halt."""
    halt_timeout_s: float
    """How long a halted process's cleanup may take before it is abandoned."""
    inbox_size: int = 16
    """Messages (``steps.send``) the process has not received that the job holds; one more is refused."""


@dataclass
class Change:
    """A jump or swap accepted but not yet handed to the process."""

    kind: str  # "jump" | "swap"
    value: Any


class RunStatus(msgspec.Struct, kw_only=True):
    """A snapshot of a job (``steps.status``), enough for a late subscriber to
    pick up: ``seq`` is the sequence number of the last announcement."""

    job_id: str
    task: str
    kind: str
    state: str
    step: int
    step_name: str
    steps: list[str]
    point: Any = None
    location: Any = None
    duration_s: float | None = None
    pausable: bool = False
    pending: dict[str, Any] | None = None
    error: str = ""
    results: dict[str, Any] = {}
    """What each step that completed returned, by step name."""
    skipped: list[str] = []
    analyses: list[Any] = []
    seq: int = 0
    started_ms: int = 0
    ended_ms: int = 0


class Refused(Exception):
    """A guard refused an otherwise allowed control request; ``str()`` is the reason."""


def parse_point(program: list[ProgramStep], point: Any) -> tuple[int, Any]:
    """A sequence point ``{"step": index or name, "point": ...}`` as
    ``(step index, the step's own point)``. Raises ``Refused`` naming the problem."""
    names = [p.name for p in program]
    if not isinstance(point, dict) or "step" not in point or not set(point) <= {"step", "point"}:
        raise Refused(
            f"a sequence point is {{\"step\": <index or name>, \"point\": <the step's point, optional>}}, got {point!r:.80}"
        )
    ref = point["step"]
    if isinstance(ref, str) and ref in names:
        return names.index(ref), point.get("point")
    if type(ref) is int and 0 <= ref < len(program):
        return ref, point.get("point")
    raise Refused(f"no step {ref!r} in this sequence (steps: {', '.join(names)}; or an index 0-{len(names) - 1})")
