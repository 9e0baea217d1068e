"""The ``epics`` trigger: each put of 1 to ``<prefix>Trigger`` runs a task.

Handshake (epics-bridge 2.1.0, https://pypi.org/project/epics-bridge/: trigger -> run task ->
acknowledge; order fixed so a client waiting for Busy=0 reads the new
status)::

    client              bridgehost                          task
    Trigger=1  ------>  (monitor of TriggerCount)
                        Busy=1  ------------------------->  run
                        <-------------------------------  outcome
                        TaskStatus, TaskDuration
                        Busy=0, Trigger=0   (when nothing else is pending)

Every put of 1 is one event (``handshake.CountedPuts``). One that arrives
while the task runs is queued in the task's lane (``on_busy = "queue"``,
bounded by the task's ``queue_size``) or refused (``on_busy = "refuse"``);
a refusal, or a full queue, is logged at WARNING and counted in
``<prefix>Refused``. Busy stays 1 and Trigger stays set while any accepted
run of this trigger is pending, so Busy=0 means every accepted put has its
TaskStatus. Reference: ``docs/epics.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from bridgehost.config import TriggerConfig
from bridgehost.errors import InvalidField
from bridgehost.host import HostState
from bridgehost.jobs import Outcome, Request, Status
from bridgehost_epics import steps as step_control
from bridgehost_epics import transport as pva
from bridgehost_epics.handshake import RECHECK_S, CountedPuts, PutQueue
from bridgehost_epics.logpvs import LogPVs
from bridgehost_epics.names import PVInterface, StandardPVs

STOP_DRAIN_S = 10.0
"""How long ``stop()`` waits for the last outcomes' PV writes."""
OPTIONAL_GRACE_S = 0.5
"""At start, how long the other PVs may take after the first required one
answered; one that has not answered by then is absent (``_absent``): its
writes are skipped until it answers."""

EXPECTED = {
    "busy": "a bi record: 1 while a put is pending, 0 once every status is written",
    "trigger": "the bo record clients put 1 to",
    "task_duration": "an ai record: the seconds the last run took",
    "trigger_count": "a calc record counting Trigger's puts; trigger_count = false for a database without it",
    "task_status": "an mbbi record: how the last run ended",
}
"""What each record the handshake writes is, for the error naming one the IOC lacks."""

if TYPE_CHECKING:
    from bridgehost.host import Host

log = logging.getLogger(__name__)

Positive = Annotated[float, msgspec.Meta(gt=0)]


class EpicsTriggerConfig(TriggerConfig, kw_only=True):
    """``[[triggers]] kind = "epics"``."""

    prefix: Annotated[str, msgspec.Meta(min_length=1)]
    """Prefix of the standard records (``P`` of ``bridgehost.db``), e.g. ``"RIG:01:"``."""
    task: str
    """The configured task a put of 1 runs (any kind)."""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    """The request params of every run (for an analysis: the run to analyse)."""
    prefixes: dict[str, str] = msgspec.field(default_factory=dict)
    """Prefix keys for the ``pvs`` templates (``main = "IOC:MOTOR:01:"``);
    ``prefix`` is always available as ``{prefix}``."""
    pvs: dict[str, str] = msgspec.field(default_factory=dict)
    """The task's PV interface: name -> template (``position_rbv = "{main}Pos:RBV"``),
    passed resolved as ``params["pvs"]``."""
    on_busy: Literal["queue", "refuse"] = "queue"
    on_startup: Literal["run", "clear"] = "run"
    """A Trigger already 1 when bridgehost connects: run it, or reset it and log."""
    trigger_count: bool = True
    """Count puts through ``<prefix>TriggerCount``; false for a database
    without it (puts of 1 while Trigger is 1 are then not seen)."""
    put_timeout_s: Positive = 5.0
    log_pvs: bool = True
    """Publish log lines to ``<prefix>{Debug,Info,Warning,Error}Log`` and obey
    ``LogLevel`` and ``SilencedLoggers``."""
    log_lines: Annotated[int, msgspec.Meta(ge=1)] = 50
    log_rate_hz: Positive = 5.0
    transport: str = ""
    step_control: bool | None = None
    """The Pause, Resume, Halt, State, Location and ControlAnswer PVs of a
    step or sequence task (``bridgehost_epics.steps``). Absent: on when the
    task is a step or sequence; ``false``: off (a database without those
    records); ``true``: required (an error if bridgehost-steps is missing or
    the task is of another kind)."""


class EpicsTrigger:
    """Serves ``config.task`` from the Trigger PV under ``config.prefix``."""

    def __init__(self, config: EpicsTriggerConfig, host: Host):
        if config.task not in host.lanes:
            raise InvalidField("task", f"no task named {config.task!r} (tasks: {', '.join(host.task_names()) or 'none'})",
                               "name a [[tasks]] table's name")
        pva.resolve_name(host, config)
        interface = PVInterface(config.pvs, {"prefix": config.prefix, **config.prefixes})
        self.config = config
        self.host = host
        self.pvs = StandardPVs(config.prefix)
        self.params = {**config.params, **({"pvs": dict(interface)} if config.pvs else {})}
        self.steps = step_control.bind(config, host, self.params)
        self.pending = 0
        self._idle = asyncio.Event()  # set while no accepted put awaits its outcome
        self._idle.set()
        self.refused = 0
        self.runs = 0
        self._refs = itertools.count(1)
        self._events: CountedPuts | None = None
        self._writer: PutQueue | None = None
        self._log_pvs: LogPVs | None = None
        self._status_pv = self.pvs.task_status_raw
        """Where a status is written: ``TaskStatus.RVAL`` or ``TaskStatus`` (VAL), see ``_set_status_pv``."""
        self._answered = False
        self._connections = 0
        self._reconnect: asyncio.Future[None] | None = None
        self._connecting: list[asyncio.Future[Any]] = []  # optional PVs still connecting after the grace
        self._held = 0  # puts to serve once the host runs (host_started)
        self._refused_queued = False

    async def start(self) -> None:
        """Connect the channels the handshake writes (and the one the trigger
        monitors) and find how TaskStatus takes a status, then arm the
        trigger: its monitor has its first value and the start-up rules
        (``on_startup``) are applied before the host reports ready, so the
        first put after ready waits for no channel search and is served as a
        put. An IOC that does not answer within ``put_timeout_s`` is logged
        and the host starts anyway; all this is done again when it answers
        (as after a restart of the IOC)."""
        ctxt = pva.async_context(pva.find(self.host, self.config))
        self._ctxt = ctxt
        self._writer = PutQueue(ctxt, self.config.put_timeout_s)
        count_pv = self.pvs.trigger_count if self.config.trigger_count else None
        if count_pv is None:
            log.warning("%s: trigger_count = false: puts of 1 while Trigger is still 1 are not seen", self.pvs.trigger)
        if self.config.log_pvs:  # a queue of their own: a handshake's writes never wait behind theirs
            self._log_pvs = LogPVs(ctxt, PutQueue(ctxt, self.config.put_timeout_s), self.pvs, self.config.log_lines,
                                   self.config.log_rate_hz)
        self._answered = await self._connect()
        boot_pv = None if self._writer.is_absent(self.pvs.boot) else self.pvs.boot  # found absent: not waited for
        self._events = CountedPuts(ctxt, self.pvs.trigger, count_pv, self._on_events, on_connect=self._on_connect,
                                   boot_pv=boot_pv)
        self._events.start()
        if self._answered:
            await self._arm()
        if self._log_pvs is not None:
            self._log_pvs.start()
        if self.steps is not None:
            self.steps.start(ctxt, self._writer)
            # as Trigger's: armed before ready (a database without the step records: not waited for)
            waits = self._answered and not self._writer.is_absent(self.pvs.pause)
            if waits and not await self.steps.arm(self.config.put_timeout_s):
                log.warning("%s: the step control monitors had no value within put_timeout_s (%s s): starting "
                                "anyway; a Pause, Resume or Halt put before they have one is reset without acting",
                                self.pvs.trigger, self.config.put_timeout_s)

    async def _connect(self) -> bool:
        """Connect the channels of every PV the trigger writes (a PV the
        database lacks does not hold this up: the others of the same IOC
        connect together, and it gets ``OPTIONAL_GRACE_S`` more), find
        TaskStatus's device support through its ``DTYP`` field
        (``_status_pv``; a database without TaskStatus holds this up for
        ``put_timeout_s``, as a wrong guess would write statuses nobody sees),
        and tell the log PVs their records' forms. A PV that has not answered
        ``OPTIONAL_GRACE_S`` after the others is absent (``_absent``): an
        ERROR for a record of the handshake, a WARNING for Refused. True if
        the IOC answered; never raises."""
        assert self._writer is not None
        pvs = self.pvs
        required = [pvs.busy, pvs.trigger, pvs.task_duration, pvs.task_status_dtyp]
        if self.config.trigger_count:
            required.append(pvs.trigger_count)
        optional = [pvs.refused, pvs.boot]  # Boot: read, not written; its channel is up for CountedPuts
        if self._log_pvs is not None:
            optional += self._log_pvs.pvs_written()
        if self.steps is not None:
            optional += [pvs.state, pvs.location, pvs.control_answer, pvs.pause, pvs.resume, pvs.halt]
        futures = {pv: asyncio.ensure_future(self._writer.connect([pv])) for pv in [*required, *optional]}
        self._connecting = list(futures.values())
        waiting = {futures[pv] for pv in required}
        answered = False
        while waiting and not answered:  # until one required PV answers, or none will
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            answered = any(not isinstance(next(iter(f.result().values())), Exception) for f in done)
        if not answered:
            log.warning("%s: the IOC did not answer within put_timeout_s (%s s): starting anyway; "
                        "the trigger serves puts once it answers", pvs.trigger, self.config.put_timeout_s)
            for future in futures.values():
                future.cancel()
            return False
        dtyp = (await futures[pvs.task_status_dtyp])[pvs.task_status_dtyp]  # TaskStatus answers with the rest
        self._set_status_pv(dtyp)
        futures[self._status_pv] = asyncio.ensure_future(self._writer.connect([self._status_pv]))
        self._connecting.append(futures[self._status_pv])
        # what the database has answers with the rest; give the others that long again
        await asyncio.wait(futures.values(), timeout=OPTIONAL_GRACE_S)
        for pv, future in futures.items():
            # not answered yet while the IOC does: absent (the database lacks it) until it answers;
            # DTYP's absence is TaskStatus's, and _set_status_pv said so
            if pv != pvs.task_status_dtyp and (not future.done() or isinstance(future.result()[pv], TimeoutError)):
                self._absent(pv)
        duration = futures[pvs.task_duration].result()[pvs.task_duration] if futures[pvs.task_duration].done() else None
        if isinstance(duration, int):
            log.warning("%s holds integers (%r): a run's seconds are written cut to a whole number (a 0.3 s run "
                        "reads 0); make it an ai record, as in bridgehost.db", pvs.task_duration, duration)
        if self._log_pvs is not None:
            await self._log_pvs.learn({pv: future.result()[pv] for pv, future in futures.items() if future.done()})
        return True

    def _absent(self, pv: str) -> None:
        """``pv`` does not answer while the IOC does: the database lacks it.
        Its writes are skipped (``PutQueue.mark_absent``) instead of each
        waiting ``put_timeout_s`` and holding every write after it; if it
        answers after all, it gets the last value skipped."""
        assert self._writer is not None
        self._writer.mark_absent([pv])
        expected = {self.pvs.busy: "busy", self.pvs.trigger: "trigger", self.pvs.task_duration: "task_duration",
                    self.pvs.trigger_count: "trigger_count", self._status_pv: "task_status"}
        if pv in expected:
            log.error("%s does not answer, but the IOC does: is %s (%s) in the database loaded with P=%s? "
                      "bridgehost does not write it (no wait of put_timeout_s each) and looks for it again every "
                      "%.0f s; clients cannot rely on it until then", pv, pv, EXPECTED[expected[pv]],
                      self.config.prefix, RECHECK_S)
        elif pv == self.pvs.refused:
            log.warning("%s does not answer (an older database?): refusals are counted in the log only",
                        self.pvs.refused)

    async def _arm(self) -> None:
        """Wait (up to ``put_timeout_s``) for the monitor's first value and its
        start-up rules. Without this the host reported ready first: a put
        right after ready then waited for the monitor's connection, and was
        taken for a Trigger left at 1 before start-up (cleared unrun with
        ``on_startup = "clear"``). A run a Trigger left at 1 asks for is held
        until the host runs (``host_started``): it cannot take requests yet."""
        assert self._events is not None
        try:
            async with asyncio.timeout(self.config.put_timeout_s):
                await self._events.armed.wait()
        except TimeoutError:
            log.warning("%s: no value from the monitor of %s within put_timeout_s (%s s): starting anyway; "
                        "the trigger serves puts once it has one", self.pvs.trigger,
                        self._events.count_pv or self.pvs.trigger, self.config.put_timeout_s)

    def host_started(self) -> None:
        """The host takes requests: run what a Trigger left at 1 asked for
        while it started (the plugin's ``host_started`` hook calls this)."""
        held, self._held = self._held, 0
        for _ in range(held):
            self._accept()

    def _set_status_pv(self, dtyp: Any) -> None:
        """Write TaskStatus's RVAL for a Raw Soft Channel mbbi (bridgehost.db),
        its VAL for a Soft Channel one (epics-bridge's README database): each
        ignores the other (EPICS record reference, mbbi, device support)."""
        pvs = self.pvs
        choice = getattr(dtyp, "choice", None)
        if choice == "Raw Soft Channel":
            self._status_pv = pvs.task_status_raw
        elif choice == "Soft Channel":
            self._status_pv = pvs.task_status
        elif choice is not None:
            self._status_pv = pvs.task_status
            log.warning("%s has device support %r: bridgehost writes its VAL, which a record reading its own input "
                        "overwrites; make it a Soft Channel or Raw Soft Channel mbbi", pvs.task_status, choice)
        else:
            self._status_pv = pvs.task_status_raw
            log.warning("cannot read %s (%s): writing %s, right for a Raw Soft Channel mbbi as in bridgehost.db "
                        "(a Soft Channel one ignores it); check that the IOC serves record fields",
                        pvs.task_status_dtyp, dtyp, pvs.task_status_raw)
        log.info("%s: writing statuses to %s", pvs.task_status, self._status_pv)

    async def stop(self) -> None:
        # The host stops triggers only after every job has its outcome; the
        # outcomes' callbacks run on the next loop turns. Let them queue
        # their writes, then write them all (TaskStatus, Busy=0, Trigger=0)
        # before the context goes: a stopped host leaves no Busy=1 behind.
        try:
            async with asyncio.timeout(STOP_DRAIN_S):
                await self._idle.wait()
                if self._writer is not None:
                    await self._writer.drain()
                if self._log_pvs is not None:  # the last lines, after the handshake's writes
                    await self._log_pvs.writer.drain()
        except TimeoutError:
            log.warning("%s: PV writes not done %.0f s after the last job ended; stopping anyway",
                        self.pvs.trigger, STOP_DRAIN_S)
        for future in [self._reconnect, *self._connecting]:
            if future is not None:
                future.cancel()
        if self._events is not None:
            await self._events.stop()
        if self._log_pvs is not None:
            self._log_pvs.stop()
        if self.steps is not None:
            await self.steps.stop()
        for writer in (self._writer, self._log_pvs.writer if self._log_pvs is not None else None):
            if writer is not None:  # a write to an IOC still away would be retried for ever
                writer.stop()

    def _on_connect(self) -> None:
        assert self._writer is not None and self._events is not None
        if self.pending:  # a restarted IOC forgot we are busy: Busy and Trigger are 1 until every status is in
            self._writer.put(self.pvs.busy, 1)
        if self.pending and self.config.trigger_count:
            # A put processes Trigger, and TriggerCount counts it: not a put to serve. (A put without
            # processing would post no monitor: clients waiting for Trigger=0 would not see it back at 1.
            # Without TriggerCount, a put of 1 to a Trigger still 1 posts nothing to tell it from a client's.)
            events = self._events
            events.own_put()
            done = asyncio.ensure_future(self._writer.put(self.pvs.trigger, 1))
            done.add_done_callback(lambda f: None if f.cancelled() or f.result() else events.own_put_failed())
        self._connections += 1
        if self._connections > 1 or not self._answered:
            # a reconnection (perhaps to a restarted IOC with another database), or the IOC was away at start
            self._reconnect = asyncio.ensure_future(self._connect_again())

    async def _connect_again(self) -> None:
        self._answered = await self._connect()

    def _on_events(self, n: int, at_connect: bool) -> None:
        assert self._writer is not None
        if at_connect and self.config.on_startup == "clear":
            log.warning("%s was already 1 when bridgehost connected: cleared without running (on_startup = \"clear\")",
                        self.pvs.trigger)
            if not self.pending:
                self._writer.put(self.pvs.trigger, 0)
            return
        if at_connect:
            log.info("%s was already 1 when bridgehost connected: running it (on_startup = \"run\")", self.pvs.trigger)
        if self.host.state is HostState.NEW:  # still starting (_arm): host_started() runs them
            self._held += n
            return
        for _ in range(n):
            self._accept()

    def _accept(self) -> None:
        assert self._writer is not None
        ref = str(next(self._refs))
        if self.config.on_busy == "refuse" and self.pending:
            self._refuse(ref, f"task {self.config.task!r} is running and on_busy = \"refuse\"")
            return
        self.pending += 1
        self._idle.clear()
        if self.pending == 1:
            self._writer.put(self.pvs.busy, 1)
        request = Request(task=self.config.task, params=self.params, source=f"epics:{self.config.prefix}", ref=ref)
        if self.steps is not None:
            self.steps.submitted(request.id)
        self.host.submit(request).add_done_callback(lambda f: self._finished(ref, f.result()))

    def _refuse(self, ref: str, reason: str) -> None:
        assert self._writer is not None
        self.refused += 1
        log.warning("%s put #%s refused: %s (%d refused so far, in %s)", self.pvs.trigger, ref, reason,
                    self.refused, self.pvs.refused)
        if not self._refused_queued:  # one write at a time, of the count by then: a put storm queues no more
            self._refused_queued = True
            self._writer.put(self.pvs.refused, self._refused_value, optional=True)

    def _refused_value(self) -> int:
        self._refused_queued = False
        return self.refused

    def _finished(self, ref: str, outcome: Outcome) -> None:
        assert self._writer is not None
        self.pending -= 1
        if self.steps is not None:
            self.steps.finished(outcome.job_id)
        if outcome.status is Status.BUSY:
            self._refuse(ref, outcome.error)
        else:
            self.runs += 1
            self._writer.put(self._status_pv, int(outcome.status))
            self._writer.put(self.pvs.task_duration, outcome.duration_s)
        if not self.pending:
            self._writer.put(self.pvs.busy, 0)
            self._writer.put(self.pvs.trigger, 0)
            self._idle.set()

    async def drain(self) -> None:
        """Wait until every PV write asked so far is done (tests, benchmarks)."""
        if self._writer is not None:
            await self._writer.drain()
        if self._log_pvs is not None:
            await self._log_pvs.writer.drain()
