"""``Run``: one steps job on the host's loop, the owner of its ``State``.

A run executes a program (one step for the ``step`` kind, several for a
``sequence``), creating each step's process with a fresh ``ProcessContext``.
Control requests arrive as method calls (``control()``) and are answered at
once; everything that happens is announced through ``sink`` (the
controller), which turns it into ``job.emit`` events and ZeroMQ broadcasts.
The state only ever changes through ``machine.next_state``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridgehost.errors import JobError, Skipped, TaskCrashed, TaskFailed
from bridgehost.jobs import now_ms
from bridgehost_steps.context import ProcessContext
from bridgehost_steps.errors import ControlRequest, Halted, JumpRequest, PauseRequest, ProcessFailureError, SwapRequest
from bridgehost_steps.machine import (
    CHANGE_PENDING,
    NOT_PAUSABLE,
    Answer,
    Control,
    Event,
    ProcessEvent,
    State,
    next_state,
    refusal,
)
from bridgehost_steps.run_types import Change, Limits, ProgramStep, Refused, RunStatus, Topic, parse_point
from bridgehost_steps.steps import StepDef
from bridgehost_steps.values import export

if TYPE_CHECKING:
    from bridgehost.jobs import Job, JobEvent

log = logging.getLogger("bridgehost.steps")

MAX_ANALYSES = 100
"""Diagnostics kept per job for ``steps.status`` and the outcome (older ones
were broadcast and are dropped from the snapshot)."""


Sink = Callable[["Run", Topic, "JobEvent"], None]


class Run:
    """One running steps job. Create and ``await execute()`` on the loop."""

    def __init__(
        self,
        job: Job,
        kind: str,
        program: list[ProgramStep],
        *,
        limits: Limits,
        sink: Sink,
        index: int = 0,
        point: Any = None,
    ):
        self.job = job
        self.id = job.id
        self.task = job.task
        self.kind = kind
        self.program = program
        self.limits = limits
        self._sink = sink
        self.index = index
        self.point = point
        self.data = [p.data for p in program]
        self.state = State.RUNNING
        self.pausable = False
        self.location: Any = None
        self.duration_s: float | None = None
        self.pending: Change | None = None
        self.error = ""
        self.analyses: collections.deque[Any] = collections.deque(maxlen=MAX_ANALYSES)
        self.results: dict[str, Any] = {}
        self.skipped: list[str] = []
        self.seq = 0
        self.started_ms = now_ms()
        self.ended_ms = 0
        self.inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=limits.inbox_size)
        self.wakeup = asyncio.Event()
        """Set and cleared at once on resume/halt/jump: wakes checkpoint() and the step gate."""
        self.ended = asyncio.Event()
        self.context: ProcessContext | None = None
        self._loop = asyncio.get_running_loop()
        self._process: asyncio.Task[Any] | None = None
        self._interrupts: set[asyncio.Future[None]] = set()
        self._recovery: asyncio.Future[tuple[str, Any, Any]] | None = None
        self._halt = self._loop.create_future()
        self._cross: tuple[int, Any] | None = None  # a sequence jump to another step
        self._location_due = False
        self._unposted_location: Any = None

    # -- state -------------------------------------------------------------

    def _move(self, event: Event, **extra: Any) -> None:
        previous = self.state
        state = next_state(previous, event)
        if state.final:
            self._flush_location()  # the final state is the job's last announcement
            self.ended_ms = now_ms()
        self.state = state
        self._announce(Topic.STATE, {"previous": previous.value, "event": event.value, **extra})

    def _announce(self, topic: Topic, data: dict[str, Any]) -> None:
        if self.state.final and topic is not Topic.STATE:
            return  # an abandoned cleanup still reporting: the final state was the last word
        event = self.job.emit(topic.event_kind, {"topic": topic.value, "state": self.state.value, **data})
        self.seq = event.seq
        self._sink(self, topic, event)

    def status(self) -> RunStatus:
        """The current snapshot."""
        pending = {self.pending.kind: export(self.pending.value)} if self.pending else None
        if self._cross is not None:
            pending = {"jump": {"step": self._cross[0], "point": export(self._cross[1])}}
        return RunStatus(
            job_id=self.id,
            task=self.task,
            kind=self.kind,
            state=self.state.value,
            step=self.index,
            step_name=self.program[self.index].name,
            steps=[p.name for p in self.program],
            point=export(self.point),
            location=self.location,
            duration_s=self.duration_s,
            pausable=self.pausable,
            pending=pending,
            error=self.error,
            results=dict(self.results),
            skipped=list(self.skipped),
            analyses=list(self.analyses),
            seq=self.seq,
            started_ms=self.started_ms,
            ended_ms=self.ended_ms,
        )

    # -- reports from the context ------------------------------------------

    def set_pausable(self, value: bool) -> None:
        if value != self.pausable:
            self.pausable = value
            self._announce(Topic.PAUSABLE, {"pausable": value})

    def post_location(self, location: Any) -> None:
        # As Automancer's send_location: several locations in one loop iteration -> only the last counts.
        self._unposted_location = location
        if not self._location_due:
            self._location_due = True
            self._loop.call_soon(self._flush_location)

    def _flush_location(self) -> None:
        if self._location_due:
            self._location_due = False
            self._set_location(self._unposted_location)

    def _set_location(self, location: Any) -> None:
        if self.kind == "sequence":
            location = {"step": self.index, "name": self.program[self.index].name, "location": location}
        self.location = location
        self._announce(Topic.LOCATION, {"location": location})

    def post_duration(self, seconds: float | None) -> None:
        self.duration_s = seconds
        self._announce(Topic.DURATION, {"duration_s": seconds})

    def post_analysis(self, analysis: dict[str, list[Any]]) -> None:
        self.analyses.append(analysis)
        self._announce(Topic.ANALYSIS, {"step": self.index, **analysis})

    # -- what checkpoint() and wait() ask ------------------------------------

    def reached_checkpoint(self) -> None:
        self._move(ProcessEvent.CHECKPOINT)

    def interrupt_pending(self) -> bool:
        """Whether ``wait()`` must give way: a pause, or (not pausing) a jump or swap."""
        if self.state in (State.PAUSING, State.PAUSED):
            return True
        return self.state is State.RUNNING and self.pending is not None

    def take_interrupt(self) -> ControlRequest:
        """What ``wait()`` raises once it has cancelled its awaitable: a pause
        first, else the pending jump or swap.

        Cancelling the awaitable takes a loop iteration, in which a resume may
        withdraw the pause that woke ``wait()``. The awaitable is gone by then,
        so ``wait()`` cannot go on waiting: it still raises ``PauseRequest``, and
        the ``checkpoint()`` the process calls next returns at once."""
        if self.state in (State.PAUSING, State.PAUSED):
            return PauseRequest()
        return self.take_change() or PauseRequest()

    def take_change(self) -> ControlRequest | None:
        """The pending jump or swap as the exception to raise in the process, or None."""
        change, self.pending = self.pending, None
        if change is None:
            return None
        if change.kind == "jump":
            old, self.point = self.point, change.value
            return JumpRequest(change.value, old)
        old, self.data[self.index] = self.data[self.index], change.value
        return SwapRequest(change.value, old)

    def new_interrupt(self) -> asyncio.Future[None]:
        signal = self._loop.create_future()
        self._interrupts.add(signal)
        return signal

    def drop_interrupt(self, signal: asyncio.Future[None]) -> None:
        self._interrupts.discard(signal)

    def _interrupt_waits(self) -> None:
        for signal in self._interrupts:
            if not signal.done():
                signal.set_result(None)

    def _wake(self) -> None:
        self.wakeup.set()
        self.wakeup.clear()

    # -- control requests ----------------------------------------------------

    def control(self, control: Control, *, point: Any = None, data: Any = None, **given: bool) -> Answer:
        """Answer a control request at once: accepted (and acted on) or
        refused with the reason. ``point`` is for jump and retry, ``data``
        for swap and retry; ``given`` says which of them were sent (None is
        a valid point)."""
        reason = refusal(self.state, control)
        if reason is not None:
            return Answer.refused(self.id, control.value, reason, self.state)
        try:
            detail = getattr(self, f"_on_{control.value}")(point=point, data=data, **given)
        except Refused as e:
            return Answer.refused(self.id, control.value, str(e), self.state)
        return Answer(job_id=self.id, control=control.value, accepted=True, state=self.state.value, detail=detail or "")

    def _on_pause(self, **_: Any) -> str:
        if not self.pausable:
            raise Refused(NOT_PAUSABLE)
        self._move(Control.PAUSE)
        self._interrupt_waits()
        return "takes effect at the process's next checkpoint() or wait()"

    def _on_resume(self, **_: Any) -> str:
        withdrawn = self.state is State.PAUSING
        self._move(Control.RESUME)
        self._wake()
        if self.pending is not None:
            self._interrupt_waits()
        return "the pending pause is withdrawn" if withdrawn else ""

    def _on_halt(self, **_: Any) -> str:
        self._move(Control.HALT)
        if not self._halt.done():
            self._halt.set_result(None)
        if self._process is not None and not self._process.done():
            self._process.cancel()
        if self._recovery is not None and not self._recovery.done():
            self._recovery.set_result(("halt", None, None))
        self._wake()
        return ""

    def _check_no_change(self) -> None:
        if self.pending is not None:
            raise Refused(CHANGE_PENDING.format(kind=self.pending.kind))
        if self._cross is not None:
            raise Refused(f"a jump to step {self._cross[0]} is already under way")

    def _on_jump(self, *, point: Any, **_: Any) -> str:
        self._check_no_change()
        target, inner = self.index, point
        if self.kind == "sequence":
            target, inner = parse_point(self.program, point)
        step = self.program[target].step
        try:
            inner = step.convert_point(inner)
        except ValueError as e:
            raise Refused(str(e)) from None
        if target != self.index:
            return self._jump_to_step(target, inner)
        self.pending = Change("jump", inner)
        self._move(Control.JUMP, pending={"jump": export(inner)})
        return self._deliver()

    def _jump_to_step(self, target: int, point: Any) -> str:
        name = self.program[target].name
        self._move(Control.JUMP, pending={"jump": {"step": target, "point": export(point)}})
        if self._process is not None:
            # Another step: the current one is halted (Automancer: "halting is triggered by jumping").
            # Also when it has just ended and the executor has not looked yet: the jump wins.
            self._cross = (target, point)
            self._process.cancel()
            if self.state is State.PAUSED:
                current = self.program[self.index].name
                return f"step {current!r} is cancelled and its cleanup runs; the sequence stays paused at step {name!r}"
            return f"the current step is cancelled; step {name!r} starts after its cleanup"
        # paused between steps: nothing runs, just move
        self.index, self.point = target, point
        self._set_location(None)
        return f"paused at step {name!r}; it starts on resume"

    def _deliver(self) -> str:
        if self.state is State.RUNNING:
            self._interrupt_waits()
            return "delivered at the process's next checkpoint() or wait()"
        return "delivered after the resume (a pause is honoured first)"

    def _on_swap(self, *, data: Any, **_: Any) -> str:
        self._check_no_change()
        try:
            data = self.program[self.index].step.convert_data(data)
        except ValueError as e:
            raise Refused(str(e)) from None
        self.pending = Change("swap", data)
        self._move(Control.SWAP, pending={"swap": export(data)})
        return self._deliver()

    def _on_retry(self, *, point: Any, data: Any, has_point: bool = False, has_data: bool = False, **_: Any) -> str:
        step = self.program[self.index].step
        try:
            new_data = step.convert_data(data) if has_data else None
            new_point = step.convert_point(point) if has_point else None
        except ValueError as e:
            raise Refused(str(e)) from None
        assert self._recovery is not None
        self._move(Control.RETRY)
        self._recovery.set_result(("retry", (has_data, new_data), (has_point, new_point)))
        return ""

    def _on_skip(self, **_: Any) -> str:
        assert self._recovery is not None
        self._recovery.set_result(("skip", None, None))
        name = self.program[self.index].name
        self.skipped.append(name)
        if self.kind == "step":
            self._move(Control.SKIP)
            return ""
        if self.index + 1 < len(self.program):
            self.index, self.point = self.index + 1, None
            self._move(ProcessEvent.NEXT_STEP, skipped=name)
            return f"step {name!r} skipped; step {self.program[self.index].name!r} starts"
        self._move(ProcessEvent.RETURNED, skipped=name)
        return f"step {name!r} skipped; it was the last step"

    # -- execution -----------------------------------------------------------

    async def execute(self) -> Any:
        """Run the program to a final state; returns the outcome data on
        COMPLETED, raises ``Halted``, ``Skipped``, ``TaskFailed`` or
        ``TaskCrashed`` otherwise. When the host cancels it (timeout,
        shutdown) the process is halted, then ``CancelledError`` propagates."""
        try:
            return await self._execute()
        except asyncio.CancelledError:
            await self._cancelled_by_host()
            raise
        finally:
            self.ended.set()

    async def _execute(self) -> Any:
        self._announce(Topic.STATE, {"previous": None, "event": "started"})
        if self.kind == "sequence":
            self._set_location(None)
        first = True
        while True:
            if self.state is State.PAUSING and not first:
                self._move(ProcessEvent.CHECKPOINT)  # between two processes is a checkpoint
            first = False
            while self.state is State.PAUSED:  # paused at a step boundary
                await self.wakeup.wait()
            if self.state is State.HALTING:
                self._move(ProcessEvent.ENDED)
                raise Halted("halted by request before the step started")
            entry = self.program[self.index]
            task = self._start_process(entry)
            abandoned = await self._until_ended(task)
            if self.state is State.HALTING:
                self._halted(task, abandoned)
            error = _error_of(task, abandoned)
            if self._cross is not None:  # jumped to another step: this one was cancelled
                if error is not None:
                    self._report_error(f"cleanup of step {entry.name!r} raised", error)
                (self.index, self.point), self._cross = self._cross, None
                self._move(ProcessEvent.RECREATED, step=self.index)
                self._set_location(None)
                continue
            if error is None and task.cancelled():
                error = RuntimeError("the process was cancelled from inside (a CancelledError escaped without a halt)")
            if error is None:
                value = task.result()
                if self.pending is not None:  # accepted but never reached: honour it now
                    self._apply(self.take_change())
                    continue
                try:
                    self.results[entry.name] = export(value)
                except TypeError as e:
                    error = e
                else:
                    if self.index + 1 < len(self.program):
                        self.index, self.point = self.index + 1, None
                        self._move(ProcessEvent.NEXT_STEP)
                        self._set_location(None)
                        continue
                    self._move(ProcessEvent.RETURNED)
                    return self._result()
            if isinstance(error, (JumpRequest, SwapRequest)):
                self._apply(error)
                continue
            decision = await self._recover(entry, error)
            if decision == "retry":
                continue
            if self.state is State.COMPLETED:  # a sequence whose last step was skipped
                return self._result()
            if self.state is State.SKIPPED:
                raise Skipped(f"step {entry.name!r} failed and was skipped: {self.error}", self._result())
            # else: a sequence's next step (state RUNNING), or a retried one

    def _start_process(self, entry: ProgramStep) -> asyncio.Task[Any]:
        context = ProcessContext(self, entry.step, self.data[self.index], self.point)
        self.context = context
        self.set_pausable(False)  # each process declares its own (Automancer: "Defaults to false")
        self._process = asyncio.create_task(_call(entry.step, context), name=f"step-{self.id}-{entry.name}")
        return self._process

    async def _until_ended(self, task: asyncio.Task[Any]) -> bool:
        """Wait for the process to end; after a halt, at most
        ``halt_timeout_s`` more. True if it was abandoned still running."""
        await asyncio.wait((task, self._halt), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait((task,), timeout=self.limits.halt_timeout_s)
        self._process = None
        if not task.done():
            task.add_done_callback(_consume)  # abandoned: whatever it ends with was reported already
            return True
        return False

    def _apply(self, change: ControlRequest | None) -> None:
        """A jump or swap that escaped the process (or was pending when it
        returned): create it again at the new point / with the new data."""
        if isinstance(change, JumpRequest):
            self.point = change.point
            self._move(ProcessEvent.RECREATED, point=export(change.point))
        elif isinstance(change, SwapRequest):
            self.data[self.index] = change.data
            self._move(ProcessEvent.RECREATED, data=export(change.data))

    def _halted(self, task: asyncio.Task[Any], abandoned: bool) -> None:
        error = _error_of(task, abandoned)
        message = "halted by request"
        data: dict[str, Any] = {}
        if abandoned:
            message += f"; its cleanup did not end within halt_timeout_s ({self.limits.halt_timeout_s} s) and was abandoned"
            self._report_error("cleanup abandoned", TimeoutError(message))
        elif error is not None and not isinstance(error, ControlRequest):
            message += f"; its cleanup raised {type(error).__name__}: {error}"
            data["traceback"] = "".join(traceback.format_exception(error))
            self._report_error("cleanup raised", error)
        self.error = message
        self._move(ProcessEvent.ENDED)
        raise Halted(message, {**self._result(), **data})

    async def _recover(self, entry: ProgramStep, error: BaseException) -> str:
        """FAULTED: wait for retry, skip or halt. Returns "retry" or "skip";
        raises Halted, TaskFailed or TaskCrashed."""
        if isinstance(error, PauseRequest):
            self.error = (
                f"step {entry.name!r}: a PauseRequest escaped the process; catch it around context.wait() "
                "and call context.checkpoint() (docs/steps.md, 'Writing a process')"
            )
        else:
            self.error = f"step {entry.name!r} failed: {type(error).__name__}: {error}"
        self._report_error(self.error, error)
        self._recovery = recovery = self._loop.create_future()
        self._move(ProcessEvent.RAISED, error=self.error)
        try:
            await asyncio.wait_for(asyncio.shield(recovery), self.limits.recovery_timeout_s)
        except TimeoutError:
            pass
        finally:
            self._recovery = None
        # A decision that came with the expiry still wins: it was answered "accepted".
        decision: str
        data: Any
        point: Any
        decision, data, point = recovery.result() if recovery.done() else ("expired", None, None)
        if decision == "retry":
            has_data, new_data = data
            has_point, new_point = point
            change = self.take_change()  # a jump or swap accepted before the failure is honoured now
            if has_data:
                self.data[self.index] = new_data
            if has_point:
                self.point = new_point
            self.error = ""
            log.info("job %s: step %r retried%s", self.id, entry.name, " (pending change applied)" if change else "")
            return "retry"
        if decision == "skip":
            self.pending = None
            return "skip"
        trace = "".join(traceback.format_exception(error))
        if decision == "halt":
            self.error = f"halted after a failure: {self.error}"
            self._move(ProcessEvent.ENDED)
            raise Halted(self.error, {**self._result(), "traceback": trace})
        self.error += f"; no retry, skip or halt within recovery_timeout_s ({self.limits.recovery_timeout_s} s)"
        self._move(ProcessEvent.RECOVERY_EXPIRED)
        kind: type[JobError] = TaskFailed if isinstance(error, ProcessFailureError) else TaskCrashed
        raise kind(self.error, {**self._result(), "traceback": trace})

    async def _cancelled_by_host(self) -> None:
        if self.state.final:
            return
        self._move(ProcessEvent.CANCELLED)
        task = self._process
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait((task,), timeout=self.limits.halt_timeout_s)
        self.error = self.error or "cancelled by the host (its timeout_s, or shutdown)"
        self._move(ProcessEvent.ENDED)

    def _report_error(self, message: str, error: BaseException) -> None:
        log.warning("job %s: %s: %s: %s", self.id, message, type(error).__name__, error)
        self.post_analysis({"errors": [{"kind": "generic", "message": f"{message}: {error}", "exception": type(error).__name__}], "warnings": [], "effects": []})

    def _result(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state.value}
        if self.kind == "sequence":
            data["results"] = dict(self.results)
            data["skipped"] = list(self.skipped)
        else:
            data["result"] = self.results.get(self.program[0].name)
        data["location"] = self.location
        return data


async def _call(step: StepDef, context: ProcessContext) -> Any:
    awaitable = step.call(context.data, context)
    if not hasattr(awaitable, "__await__"):
        raise TypeError(f"step {step.name!r} returned {type(awaitable).__name__}, not an awaitable: make it `async def`")
    return await awaitable


def _error_of(task: asyncio.Task[Any], abandoned: bool) -> BaseException | None:
    """What the process ended with: None for a return (or a cancellation
    it let through), the exception otherwise."""
    if abandoned or task.cancelled():
        return None
    error = task.exception()
    if isinstance(error, asyncio.CancelledError):
        return None
    return error


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()

