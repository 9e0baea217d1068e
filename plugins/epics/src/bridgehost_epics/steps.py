"""Step control over EPICS: Pause, Resume and Halt PVs for the step or
sequence job an ``epics`` trigger runs, and the job's State and Location.

When the trigger's task is a ``step`` or ``sequence`` (bridgehost-steps),
each put of 1 to ``<prefix>Trigger`` starts a job and Busy stays 1 while it
runs, paused time included (``bridgehost_epics.trigger``). This binding adds,
under the same prefix (records in ``bridgehost.db``)::

    Pause, Resume, Halt   bo: each put of 1 is one control request for the
                          current job, counted through PauseCount, ... the
                          way Trigger's puts are (handshake.CountedPuts);
                          reset to 0 once answered
    ControlAnswer         JSON of the answer to the last of them
    State                 mbbi: the job's state (names.STEP_STATES)
    Location              JSON of the job's exported location

A control request goes to ``StepsController`` (the Python API every binding
uses) and its answer, accepted or refused with the reason, is written to
ControlAnswer and logged (a refusal at WARNING, so also on WarningLog).
State and Location follow ``StepsController.subscribe``'s announcements.
Every write goes through the trigger's ``PutQueue``, so the job's final
State is on the IOC before its TaskStatus and Busy=0.

An IOC database without these records (epics-bridge's) still works: the
records are written only while ``PauseCount`` is connected, so a missing
record costs no write timeouts; one WARNING says they are absent.

bridgehost-steps is imported only by ``bind``: bridgehost-epics installs
and works without it. Reference: docs/epics.md, "Step control".
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from bridgehost.errors import InvalidField, InvalidRequest
from bridgehost_epics.convert import long_string
from bridgehost_epics.handshake import CountedPuts, PutQueue
from bridgehost_epics.logpvs import MAX_BYTES
from bridgehost_epics.names import STEP_STATES, StandardPVs

if TYPE_CHECKING:
    from p4p.client.asyncio import Context

    from bridgehost.host import Host
    from bridgehost_epics.trigger import EpicsTriggerConfig
    from bridgehost_steps.controller import Announcement, StepsController
    from bridgehost_steps.machine import State

log = logging.getLogger(__name__)

CONTROLS = ("pause", "resume", "halt")
"""The control PVs, by ``StandardPVs`` name (``pause`` -> ``<prefix>Pause``),
each the ``StepsController`` method of the same name."""

INSTALL_HINT = "pip install bridgehost-steps (or set step_control = false)"


def bind(config: EpicsTriggerConfig, host: Host, params: dict[str, Any]) -> StepControl | None:
    """The step control of a trigger, or None when it has none.

    ``config.step_control``: ``false`` -> None; absent -> a binding when the
    trigger's task is a step or sequence task, else None; ``true`` -> a
    binding, or ``InvalidField("step_control")`` when bridgehost-steps is not
    installed (the hint names ``pip install bridgehost-steps``) or the task is
    of another kind. ``params`` (the request params of every run) are checked
    as a job's would be: ``InvalidField("params")`` with the step's reason.
    """
    if config.step_control is False:
        return None
    try:
        import bridgehost_steps  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "bridgehost_steps":
            raise  # installed, but broken: its own error says why
        if config.step_control:
            raise InvalidField("step_control", "step control needs bridgehost-steps, which is not installed",
                               INSTALL_HINT) from None
        return None
    from bridgehost_steps.controller import StepsController
    from bridgehost_steps.task import StepsTask

    task = host.lanes[config.task].impl
    if not isinstance(task, StepsTask):
        if config.step_control:
            raise InvalidField("step_control", f"task {config.task!r} is not a step or sequence task",
                               "name a task of kind \"step\" or \"sequence\", or set step_control = false")
        return None
    try:
        task.prepare(params)  # the params every run gets: refused now rather than at each put
    except InvalidRequest as e:
        raise InvalidField("params", f"not valid for {task.kind} task {config.task!r}: {e}",
                           "a step or sequence job takes params data and point only (no pvs table)") from None
    return StepControl(config, StepsController.of(host))


class StepControl:
    """The step control PVs of one trigger; its jobs are told by the trigger
    (``submitted`` / ``finished``), in the order of the Trigger puts.

    The *current* job, the one a Pause, Resume or Halt put addresses, is the
    earliest job of this trigger that has started and not ended; State and
    Location show one job at a time, from its start until the next job of
    the trigger starts (with ``concurrency = 1``: the job that runs, else the
    last one).
    """

    def __init__(self, config: EpicsTriggerConfig, controller: StepsController):
        self.task = config.task
        self.pvs = StandardPVs(config.prefix)
        self.controller = controller
        self.jobs: dict[str, State | None] = {}
        """This trigger's jobs not yet finished, in put order -> their state (None: queued)."""
        self.shown: str | None = None
        self.last_ended: tuple[str, str] | None = None
        self.refused = 0
        self._warned_absent = False
        self._shown_state: State | None = None
        self._location: Any = None
        self._location_queued = False
        self._puts = {control: itertools.count(1) for control in CONTROLS}
        self._events: list[CountedPuts] = []
        self._writer: PutQueue | None = None

    # -- life --------------------------------------------------------------

    def start(self, ctxt: Context, writer: PutQueue) -> None:
        self._writer = writer
        for control in CONTROLS:
            # A restarted IOC forgets State and Location: show them again on reconnection.
            on_connect = self._show_again if control == "pause" else None
            events = CountedPuts(ctxt, getattr(self.pvs, control), getattr(self.pvs, control + "_count"),
                                 functools.partial(self._on_puts, control), on_connect=on_connect)
            events.start()
            self._events.append(events)
        self.controller.subscribe(self._on_announcement)
        log.info("step control of task %r: %s, %s, %s; %s, %s, %s", self.task, self.pvs.pause, self.pvs.resume,
                 self.pvs.halt, self.pvs.state, self.pvs.location, self.pvs.control_answer)

    async def arm(self, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s``) until the Pause, Resume and Halt
        monitors have their first values and have applied the start-up rule
        (a put found at 1 is reset without acting): the trigger calls this
        before the host reports ready, so a put right after ready is served,
        not taken for one left at 1 before bridgehost connected. True if armed."""
        waits = [asyncio.ensure_future(events.armed.wait()) for events in self._events]
        _, pending = await asyncio.wait(waits, timeout=timeout_s)
        for wait in pending:
            wait.cancel()
        return not pending

    async def stop(self) -> None:
        # Stop taking control puts; keep following the announcements, so a
        # job halted by the host's shutdown still shows its final State.
        for events in self._events:
            await events.stop()

    def submitted(self, job_id: str) -> None:
        """The trigger submitted ``job_id`` (before it may start)."""
        self.jobs[job_id] = None

    def finished(self, job_id: str) -> None:
        """The job's outcome is in (after its final announcement)."""
        state = self.jobs.pop(job_id, None)
        if state is not None:
            self.last_ended = (job_id, state.value)

    # -- control requests ------------------------------------------------------

    def _on_puts(self, control: str, n: int, at_connect: bool) -> None:
        assert self._writer is not None
        pv = getattr(self.pvs, control)
        if at_connect:
            # Set while bridgehost was away: which job it meant cannot be known.
            log.warning("%s was already 1 when bridgehost connected: reset without acting; put 1 again to %s",
                        pv, control)
        else:
            for _ in range(n):
                self._answer(control, next(self._puts[control]))
        self._writer.put(pv, 0)

    def _answer(self, control: str, put: int) -> None:
        from bridgehost_steps.machine import Answer

        assert self._writer is not None
        pv = getattr(self.pvs, control)
        job = self._current()
        answer = Answer.refused("", control, self._nothing_reason()) if job is None else getattr(self.controller, control)(job)
        if answer.accepted:
            log.info("%s put #%d: %s of job %s accepted (%s)%s", pv, put, control, job, answer.state,
                     f": {answer.detail}" if answer.detail else "")
        else:
            self.refused += 1
            log.warning("%s put #%d refused: %s%s", pv, put, answer.reason, f" (job {job})" if job else "")
        text = msgspec.json.encode({**answer.to_builtins(), "put": put})
        self._writer.put(self.pvs.control_answer, long_string(text), optional=True)

    def _current(self) -> str | None:
        for job, state in self.jobs.items():
            if state is not None and not state.final:
                return job
        return None

    def _nothing_reason(self) -> str:
        trigger = self.pvs.trigger
        if self.jobs:
            return f"the job started by {trigger} is queued behind another job of task {self.task!r} and has not started"
        if self.last_ended is not None:
            job, state = self.last_ended
            return f"nothing is running: job {job} has ended ({state}); put 1 to {trigger} to start task {self.task!r}"
        return f"nothing is running: put 1 to {trigger} to start task {self.task!r}"

    # -- State and Location ------------------------------------------------------

    def _on_announcement(self, announcement: Announcement) -> None:
        from bridgehost_steps.machine import State

        job = announcement.data["job_id"]
        if job not in self.jobs:
            return  # another trigger's job, or one started over ZeroMQ
        state = self.jobs[job] = State(announcement.data["state"])
        if job != self.shown:
            shown_state = self.jobs.get(self.shown) if self.shown else None
            if shown_state is not None and not shown_state.final:
                return  # concurrency > 1: keep showing the earlier job until it ends
            self.shown, self._shown_state = job, None
            self._show_location(None)
        if state != self._shown_state:
            self._show_state(state)
        if announcement.topic == "steps.location":
            self._show_location(announcement.data["location"])

    def _present(self) -> bool:
        """Whether the IOC has the step records (their PauseCount answers)."""
        if self._events and self._events[0].connected:
            return True
        if not self._warned_absent:
            self._warned_absent = True
            log.warning("%s does not answer: no step control records on the IOC (an older database?); State, "
                        "Location and ControlAnswer are written once it answers. step_control = false turns "
                        "step control off", self.pvs.pause_count)
        return False

    def _show_state(self, state: State) -> None:
        assert self._writer is not None
        self._shown_state = state
        if self._present():
            self._writer.put(self.pvs.state, STEP_STATES.index(state.value), optional=True)

    def _show_location(self, location: Any) -> None:
        # Queued once, encoded when written: a process reporting faster than
        # the IOC answers costs one write, of the latest location.
        assert self._writer is not None
        self._location = location
        if not self._location_queued and self._present():
            self._location_queued = True
            self._writer.put(self.pvs.location, self._location_value, optional=True)

    def _location_value(self) -> Any:
        self._location_queued = False
        text = msgspec.json.encode(self._location)
        if len(text) > MAX_BYTES:
            log.warning("%s: the location's JSON is %d bytes, over the %d the record holds: written as null",
                        self.pvs.location, len(text), MAX_BYTES)
            text = b"null"
        return long_string(text)

    def _show_again(self) -> None:
        assert self._writer is not None
        if self._shown_state is None:  # no job yet: clear what an earlier bridgehost left
            self._writer.put(self.pvs.state, STEP_STATES.index("idle"), optional=True)
        else:
            self._show_state(self._shown_state)
        self._show_location(self._location)
