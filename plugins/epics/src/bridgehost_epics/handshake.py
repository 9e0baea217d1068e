"""Building blocks of a PV handshake, reusable by any EPICS binding:

- ``CountedPuts`` turns the puts of 1 to a ``bo`` record into events, none
  lost: it monitors a counter record that the ``bo`` record's FLNK
  processes (``TriggerCount`` in ``bridgehost.db``), so two puts between two
  monitor updates still count as two. A ``bo`` posts a monitor only when its
  value changes (EPICS record reference, bo "Monitor"), so a second put of 1
  before the first was reset would otherwise be invisible.
- ``PutQueue`` writes PVs one at a time, in the order asked, each with a
  timeout: a handshake's order (TaskStatus before Busy=0) holds on the wire,
  also across a stall of the IOC (a write that got no answer is retried
  before the next one).

Both run on the asyncio loop with p4p's asyncio client: nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from p4p.client.asyncio import Context, Disconnected, Finished

from bridgehost.text import cut_middle

log = logging.getLogger(__name__)

BOOT_WAIT_S = (1.0, 5.0)
"""How long the first connection waits for ``boot_pv`` (a database may lack
it), and a reconnection when it answered before (the IOC has just answered;
a loaded machine can take a second)."""
RECHECK_S = 30.0
"""How often a PV marked absent (``PutQueue.mark_absent``) is looked for
again, out of the queue's order, when a write to it is skipped."""

OnEvents = Callable[[int, bool], None]
"""``on_events(n, at_connect)``: ``n`` new puts of 1; ``at_connect`` is True
for a Trigger found set when the monitor (re)connected to a fresh record."""


class CountedPuts:
    """Counts puts of 1 to ``trigger_pv`` through ``count_pv``.

    ``count_pv`` may be ``None`` for a database without the counter
    (epics-bridge's own): then the events are the monitor updates of
    ``trigger_pv`` with value 1, and puts of 1 while the record is already 1
    are not seen (they post no update).

    On (re)connection: if the counter went on from where it was (a network
    break, the same IOC), the puts made meanwhile are events; if it restarted
    (a new IOC, or the first connection), a Trigger that is 1 is one event
    with ``at_connect`` True, for the owner's start-up policy.

    ``boot_pv`` (``Boot`` in ``bridgehost.db``: a record processed once when
    the IOC starts, so its timestamp changes only then) tells a restart from
    a network break for sure: a counter that restarted and then counted puts
    made before bridgehost reconnected could read as many as before, or
    more. On a restarted IOC the count is then the puts made since it
    started, each an event. Without it (a database without ``Boot``: it did
    not answer the first connection within ``BOOT_WAIT_S``) the counter
    alone decides, and reconnections do not wait for it.

    ``armed`` is set once the first value has come and these rules have been
    applied: from then on a put of 1 is an event like any other. Before,
    a put could be taken for a Trigger left at 1 before the connection.

    ``own_put()`` before the owner puts 1 to ``trigger_pv`` itself (to set
    it again on a restarted IOC): that put is not an event. Only with
    ``count_pv``, which counts every put; without it a put of 1 to a record
    already 1 posts no update to discount.
    """

    def __init__(self, ctxt: Context, trigger_pv: str, count_pv: str | None, on_events: OnEvents,
                 *, on_connect: Callable[[], None] | None = None, boot_pv: str | None = None):
        self.ctxt = ctxt
        self.trigger_pv = trigger_pv
        self.count_pv = count_pv
        self.boot_pv = boot_pv
        self._boot: float | None = None  # boot_pv's timestamp at the last connection
        self.on_events = on_events
        self.on_connect = on_connect
        self.connected = False
        self._last: float | None = None  # the counter (or Trigger stamp) at the last update
        self._fresh = True
        self._subscription: Any = None
        self._own = 0  # the owner's own puts of 1 still to come: not events
        self.armed = asyncio.Event()

    def own_put(self) -> None:
        """The owner is about to put 1 to the trigger PV: not an event."""
        self._own += 1

    def own_put_failed(self) -> None:
        """That put did not happen after all."""
        self._own = max(0, self._own - 1)

    def _not_own(self, n: int) -> int:
        own = min(n, self._own)
        self._own -= own
        return n - own

    def start(self) -> None:
        pv = self.count_pv or self.trigger_pv
        self._subscription = self.ctxt.monitor(pv, self._update, notify_disconnect=True)

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            await self._subscription.wait_closed()
            self._subscription = None

    async def _update(self, value: Any) -> None:
        if isinstance(value, Exception):
            if isinstance(value, Disconnected):
                if self.connected:
                    log.warning("lost %s; events resume when it reconnects", self.count_pv or self.trigger_pv)
                self.connected, self._fresh = False, True
            elif not isinstance(value, Finished):
                log.error("monitor of %s: %s", self.count_pv or self.trigger_pv, value)
            return
        if self._fresh:
            self._fresh = False
            self.connected = True
            log.info("monitoring %s", self.count_pv or self.trigger_pv)
            if self.on_connect is not None:
                self.on_connect()
            await self._connected(value)
            self.armed.set()
            return
        if self.count_pv is None:
            if int(value) == 1:
                self.on_events(1, False)
            self._last = value.timestamp
            return
        count = float(value)
        new = int(count - (self._last or 0.0))
        self._last = count
        if new > 0 and (new := self._not_own(new)):
            self.on_events(new, False)

    async def _restarted(self) -> bool | None:
        """Whether the IOC started again since the last connection (``boot_pv``);
        None when it cannot be told (the first connection, no ``boot_pv``)."""
        if self.boot_pv is None or (self._last is not None and self._boot is None):
            return None  # no Boot, or it did not answer the first connection: the database lacks it
        try:
            async with asyncio.timeout(BOOT_WAIT_S[self._boot is not None]):
                stamp = (await self.ctxt.get(self.boot_pv)).timestamp
        except Exception as e:
            if self._boot is not None:
                log.warning("%s did not answer (%s): cannot tell whether the IOC restarted; going by %s alone",
                            self.boot_pv, type(e).__name__, self.count_pv)
            return None
        before, self._boot = self._boot, stamp
        return None if before is None else stamp != before

    async def _connected(self, value: Any) -> None:
        if self.count_pv is None:
            # A stamp we have seen is the update we had before the break.
            if int(value) == 1 and value.timestamp != self._last:
                self.on_events(1, True)
            self._last = value.timestamp
            return
        count = float(value)
        restarted = await self._restarted()
        if self._last is not None and restarted:
            # every count of the new IOC is a put made since it started, after we lost the old one
            self._last = count
            if count >= 1:
                log.warning("%d put(s) to %s on the restarted IOC before bridgehost reconnected: serving them",
                            int(count), self.trigger_pv)
                self.on_events(int(count), False)
                return
        elif self._last is not None and count >= self._last:
            missed = int(count - self._last)
            self._last = count
            if missed:
                log.warning("%d put(s) to %s while disconnected: serving them", missed, self.trigger_pv)
                self.on_events(missed, False)
            return
        self._last = count
        try:
            trigger = await asyncio.wait_for(self.ctxt.get(self.trigger_pv), 5.0)
        except Exception as e:  # the count answered, so this is rare: say so, do not guess
            log.error("cannot read %s after connecting: %s: %s", self.trigger_pv, type(e).__name__, e)
            return
        # A put after the count we hold will come as a count update: only a
        # Trigger set before it (its record processed first) is pending here.
        if int(trigger) == 1 and trigger.timestamp <= value.timestamp:
            self.on_events(1, True)


class PutQueue:
    """Writes PVs in order, one at a time, each within ``timeout_s``.

    ``put(pv, value)`` returns at once; the write happens after every write
    asked before it has finished (or failed).

    A write to a PV that has answered before (a write or ``connect``) and
    now gets no answer (``timeout_s`` passed, or the channel dropped: the IOC
    stalled, restarts, or the network broke) is retried, every ``timeout_s``,
    until the IOC takes it, and the writes after it wait: a client never sees
    Busy=0 over a TaskStatus that did not arrive, nor Busy=1 for ever once
    the IOC answers again. The first failure is logged at WARNING, the
    success after it too. Any other failed write (a PV the database lacks, a
    put the server refuses, a value the record cannot take) is logged with
    the PV and the reason and does not stop the ones after it. ``optional``
    PVs (absent from some databases) warn once, then only at DEBUG until they
    succeed again. ``stop()`` ends the retries.

    A PV the owner marked absent (``mark_absent``: the IOC answers, this PV
    does not) is not waited for: its writes are skipped at once (DEBUG), so
    one missing record cannot hold every later write for ``timeout_s``;
    it is looked for again, out of order, at most every ``RECHECK_S``
    seconds when a write to it is skipped, and by any ``connect``. When it
    answers, the last value skipped is written (queued then: it is the state
    by then, and the writes before it were made).
    """

    def __init__(self, ctxt: Context, timeout_s: float):
        self.ctxt = ctxt
        self.timeout_s = timeout_s
        self.failures = 0
        self._queue: asyncio.Queue[tuple[str, Any, bool, asyncio.Future[bool]]] = asyncio.Queue()
        self._quiet: set[str] = set()
        self._answered: set[str] = set()
        """PVs that answered a write or a ``connect``: a write to one that gets no answer is retried."""
        self._absent: dict[str, float] = {}
        """PVs marked absent -> loop time they were last looked for."""
        self._checks: set[asyncio.Future[Any]] = set()
        self._skipped: dict[str, Any] = {}
        """PV marked absent -> the last value a write to it skipped."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bridgehost-epics-puts")

    def put(self, pv: str, value: Any, *, optional: bool = False) -> Awaitable[bool]:
        """Queue a write; the returned future is True once it succeeded.

        ``value`` may be a callable without arguments: it is called just
        before the write (or its skip), so a value that changes often (a location) can be
        queued once and written as it is by then."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((pv, value, optional, done))
        return done

    async def connect(self, pvs: list[str]) -> dict[str, Any]:
        """Connect the channels of ``pvs`` now, so that their first write does
        not wait for a search and a connection (about 40 ms on a soft IOC,
        against a few ms for a write on a connected channel). Gets each PV,
        all at once, each within ``timeout_s``; p4p keeps the channel open for
        the writes. Returns ``{pv: value}``, or ``{pv: exception}`` for a PV
        that did not answer (a ``TimeoutError``) or was refused; never raises."""

        async def one(pv: str) -> Any:
            try:
                async with asyncio.timeout(self.timeout_s):
                    value = await self.ctxt.get(pv)
            except Exception as e:
                self._answered.discard(pv)  # the IOC answers and lacks it (perhaps after a restart with another database)
                return e
            self._answered.add(pv)
            if self._absent.pop(pv, None) is not None:
                log.warning("%s answers now: writing it again", pv)
                if pv in self._skipped:
                    self.put(pv, self._skipped.pop(pv))
            return value

        return dict(zip(pvs, await asyncio.gather(*(one(pv) for pv in pvs)), strict=True))

    def mark_absent(self, pvs: list[str]) -> None:
        """Skip writes to ``pvs`` until a ``connect`` finds them (see the class)."""
        now = asyncio.get_running_loop().time()
        for pv in pvs:
            self._absent[pv] = now

    def is_absent(self, pv: str) -> bool:
        return pv in self._absent

    async def drain(self) -> None:
        """Wait until every write asked so far is done."""
        await self.put("", None)

    def stop(self) -> None:
        """Stop writing now; writes still queued (or being retried) are dropped."""
        self._task.cancel()
        for check in self._checks:
            check.cancel()

    async def _run(self) -> None:
        while True:
            pv, value, optional, done = await self._queue.get()
            ok = True
            if pv:
                ok = await self._write(pv, value, optional)
            if not done.done():
                done.set_result(ok)

    async def _write(self, pv: str, value: Any, optional: bool) -> bool:
        loop = asyncio.get_running_loop()
        if pv in self._absent:
            # called even so: its owner may count on the call (a value queued once)
            self._skipped[pv] = value() if callable(value) else value
            if loop.time() - self._absent[pv] >= RECHECK_S:
                self._absent[pv] = loop.time()
                check = asyncio.ensure_future(self.connect([pv]))
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)
            log.debug("put %s skipped: it did not answer when looked for (absent from the database?)", pv)
            return False
        first = loop.time()
        attempts = 0
        while True:
            attempts += 1
            started = loop.time()
            try:
                if callable(value):  # called again on a retry: the value as it is by then
                    value = value()
                async with asyncio.timeout(self.timeout_s):
                    await self.ctxt.put(pv, value, get=False)
            except Exception as e:
                self.failures += 1
                unanswered = isinstance(e, TimeoutError | Disconnected)
                reason = f"no answer within {self.timeout_s} s" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
                shown = cut_middle(repr(value), 200, inline=True)
                if unanswered and pv in self._answered:
                    if attempts == 1:
                        log.warning("put %s = %s failed: %s; retrying every %s s until the IOC answers (the writes "
                                    "after it wait, so their order holds)", pv, shown, reason, self.timeout_s)
                    else:
                        log.debug("put %s = %s failed again (attempt %d): %s", pv, shown, attempts, reason)
                    # at most one attempt per timeout_s, however fast a failure comes
                    await asyncio.sleep(max(0.0, self.timeout_s - (loop.time() - started)))
                    continue
                level = logging.DEBUG if pv in self._quiet else logging.WARNING
                log.log(level, "put %s = %s failed: %s%s", pv, shown, reason,
                        " (optional PV: further failures logged at DEBUG)" if optional and pv not in self._quiet else "")
                if optional:
                    self._quiet.add(pv)
                return False
            break
        if attempts > 1:
            log.warning("put %s = %s done after %d attempts (%.1f s): the IOC answers again", pv,
                        cut_middle(repr(value), 200, inline=True), attempts, loop.time() - first)
        self._answered.add(pv)
        self._quiet.discard(pv)
        return True
