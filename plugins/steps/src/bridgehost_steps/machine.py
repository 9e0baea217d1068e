"""The state machine of one steps job: states, what moves between them, and
the answer to a control request.

A job (a ``step`` or a ``sequence`` task) is in exactly one ``State``. Two
kinds of event move it: a control request (``Control``: pause, resume, halt,
jump, swap, retry, skip), answered at once with an ``Answer``, and something
the process did (``ProcessEvent``: it reached a checkpoint, returned, raised,
was re-created...). ``TRANSITIONS`` is the whole table; a control request
whose ``(state, control)`` pair is absent is refused with the reason in
``REFUSALS``. ``docs/steps.md`` prints the table, and the tests walk it pair
by pair.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class State(enum.StrEnum):
    """Where a steps job is. The last four are final."""

    RUNNING = "running"
    """The process runs; no pause is pending."""
    PAUSING = "pausing"
    """A pause was accepted; it takes effect at the process's next
    ``checkpoint()`` (or the end of a sequence's step). ``wait()`` raises
    ``PauseRequest`` meanwhile."""
    PAUSED = "paused"
    """The process sits in ``checkpoint()`` (or a sequence waits before its
    next step) until resumed, jumped or halted."""
    FAULTED = "faulted"
    """The process raised; the job stays open until retry, skip or halt, or
    until ``recovery_timeout_s`` expires."""
    HALTING = "halting"
    """The process was cancelled; its cleanup (``except CancelledError`` /
    ``finally``) runs, bounded by ``halt_timeout_s``."""
    COMPLETED = "completed"
    SKIPPED = "skipped"
    HALTED = "halted"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({State.COMPLETED, State.SKIPPED, State.HALTED, State.FAILED})


class Control(enum.StrEnum):
    """A control request, as the ZeroMQ topic ``steps.<value>`` names it."""

    PAUSE = "pause"
    RESUME = "resume"
    HALT = "halt"
    JUMP = "jump"
    SWAP = "swap"
    RETRY = "retry"
    SKIP = "skip"


class ProcessEvent(enum.StrEnum):
    """Something the runtime observed of the process."""

    CHECKPOINT = "checkpoint"
    """The process called ``checkpoint()`` with a pause pending."""
    RETURNED = "returned"
    """The process returned (the last step of a sequence, or a skipped last step)."""
    NEXT_STEP = "next-step"
    """A sequence's step ended (returned or was skipped) and another follows."""
    RECREATED = "recreated"
    """A ``JumpRequest`` or ``SwapRequest`` escaped the process (or one was
    pending when it returned): it is created again with the new point or data."""
    RAISED = "raised"
    """The process raised (``ProcessFailureError`` or any other exception)."""
    RECOVERY_EXPIRED = "recovery-expired"
    """No retry, skip or halt within ``recovery_timeout_s``."""
    CANCELLED = "cancelled"
    """The host cancelled the job (its ``timeout_s``, or shutdown)."""
    ENDED = "ended"
    """The cancelled process has ended (its cleanup finished, raised, or was
    abandoned after ``halt_timeout_s``)."""


Event = Control | ProcessEvent

S, C, P = State, Control, ProcessEvent

TRANSITIONS: dict[tuple[State, Event], State] = {
    # control requests
    (S.RUNNING, C.PAUSE): S.PAUSING,
    (S.RUNNING, C.HALT): S.HALTING,
    (S.RUNNING, C.JUMP): S.RUNNING,
    (S.RUNNING, C.SWAP): S.RUNNING,
    (S.PAUSING, C.RESUME): S.RUNNING,
    (S.PAUSING, C.HALT): S.HALTING,
    (S.PAUSING, C.JUMP): S.PAUSING,
    (S.PAUSING, C.SWAP): S.PAUSING,
    (S.PAUSED, C.RESUME): S.RUNNING,
    (S.PAUSED, C.HALT): S.HALTING,
    (S.PAUSED, C.JUMP): S.PAUSED,
    (S.PAUSED, C.SWAP): S.PAUSED,
    (S.FAULTED, C.RETRY): S.RUNNING,
    (S.FAULTED, C.SKIP): S.SKIPPED,
    (S.FAULTED, C.HALT): S.HALTING,
    # what the process did
    (S.RUNNING, P.RETURNED): S.COMPLETED,
    (S.RUNNING, P.NEXT_STEP): S.RUNNING,
    (S.RUNNING, P.RECREATED): S.RUNNING,
    (S.RUNNING, P.RAISED): S.FAULTED,
    (S.RUNNING, P.CANCELLED): S.HALTING,
    (S.PAUSING, P.CHECKPOINT): S.PAUSED,
    (S.PAUSING, P.RETURNED): S.COMPLETED,
    (S.PAUSING, P.NEXT_STEP): S.PAUSED,
    (S.PAUSING, P.RECREATED): S.PAUSING,
    (S.PAUSING, P.RAISED): S.FAULTED,
    (S.PAUSING, P.CANCELLED): S.HALTING,
    (S.PAUSED, P.NEXT_STEP): S.PAUSED,
    (S.PAUSED, P.RECREATED): S.PAUSED,
    (S.PAUSED, P.RETURNED): S.COMPLETED,
    (S.PAUSED, P.RAISED): S.FAULTED,
    (S.PAUSED, P.CANCELLED): S.HALTING,
    (S.FAULTED, P.NEXT_STEP): S.RUNNING,
    (S.FAULTED, P.RETURNED): S.COMPLETED,
    (S.FAULTED, P.RECOVERY_EXPIRED): S.FAILED,
    (S.FAULTED, P.CANCELLED): S.HALTING,
    (S.HALTING, P.CANCELLED): S.HALTING,
    (S.HALTING, P.ENDED): S.HALTED,
}
"""``(state, event) -> next state``. A pair that is absent cannot happen
(process events) or is refused (control requests, see ``REFUSALS``).

Notes on the less obvious rows: a jump or swap accepted while PAUSING or
PAUSED keeps the job where it is and is delivered after the resume (a pause
is honoured before a jump); within a sequence a jump to another step cancels
the current step at once instead. ``(FAULTED, SKIP) -> SKIPPED`` is a
``step`` task's; a ``sequence`` goes on with ``NEXT_STEP`` (or ``RETURNED``
after its last step). ``(PAUSED, RECREATED)`` is a paused sequence jumped to
another step; ``(PAUSED, RETURNED)`` and ``(PAUSED, RAISED)`` happen when a
process paused in one task of its own ends from another."""

ENDED = "the job has ended ({state}); start a new one with steps.start"
"""The refusal of any control of an ended job (``state``: its final state)."""
_HALTING = "the job is halting; wait for it to end"
_FAULTED = "the process failed: retry, skip or halt it"

REFUSALS: dict[tuple[State, Control], str] = {
    (S.RUNNING, C.RESUME): "not paused",
    (S.RUNNING, C.RETRY): "not failed: only a failed process can be retried",
    (S.RUNNING, C.SKIP): "not failed: only a failed process can be skipped; halt it or jump instead",
    (S.PAUSING, C.PAUSE): "a pause is already pending",
    (S.PAUSING, C.RETRY): "not failed: only a failed process can be retried",
    (S.PAUSING, C.SKIP): "not failed: only a failed process can be skipped; halt it or jump instead",
    (S.PAUSED, C.PAUSE): "already paused",
    (S.PAUSED, C.RETRY): "not failed: only a failed process can be retried",
    (S.PAUSED, C.SKIP): "not failed: only a failed process can be skipped; halt it or jump instead",
    (S.FAULTED, C.PAUSE): _FAULTED,
    (S.FAULTED, C.RESUME): _FAULTED,
    (S.FAULTED, C.JUMP): "the process failed: retry it with a point instead",
    (S.FAULTED, C.SWAP): "the process failed: retry it with new data instead",
    **{(S.HALTING, c): _HALTING for c in Control},
    **{(s, c): ENDED.format(state=s.value) for s in FINAL for c in Control},
}
"""Why ``(state, control)`` is refused, for every pair not in ``TRANSITIONS``."""

NOT_PAUSABLE = "not pausable: the process has not set context.pausable = True"
CHANGE_PENDING = "a {kind} is already pending; it takes effect at the process's next checkpoint() or wait()"


def next_state(state: State, event: Event) -> State:
    """The state ``event`` leads to from ``state``. Raises ``KeyError`` for a
    pair outside ``TRANSITIONS`` (a bug in the runtime)."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise KeyError(f"no transition from {state.value!r} on {event.value!r}") from None


def refusal(state: State, control: Control) -> str | None:
    """Why ``control`` is refused in ``state``, or None if the table accepts it
    (guards such as pausability are checked by the runtime after this)."""
    if (state, control) in TRANSITIONS:
        return None
    return REFUSALS[(state, control)]


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a control request: ``accepted``, or refused with ``reason``.

    ``state`` is the job's state right after the request (``pausing`` after
    an accepted pause: ``paused`` follows at the process's next checkpoint,
    announced as a state event). ``detail`` says what an accepted request
    will do when that is not obvious (a jump delivered on resume).
    """

    job_id: str
    control: str
    accepted: bool
    state: str = ""
    reason: str = ""
    detail: str = ""

    @classmethod
    def refused(cls, job_id: str, control: str, reason: str, state: State | None = None) -> Answer:
        return cls(job_id=job_id, control=control, accepted=False, state=state.value if state else "", reason=reason)

    def to_builtins(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
