"""The ``epics-heartbeat`` watchdog: proof of life on ``<prefix>Heartbeat``.

epics-bridge's isolated heartbeat monitor and "suicide pact" (epics-bridge
2.1.0, https://pypi.org/project/epics-bridge/, sections 2 and 3), for bridgehost:

- a thread of its own toggles Heartbeat (0, 1, 0, ...) every ``period_s``;
- it stops toggling while the host's event loop has not advanced for
  ``tolerance_s`` (``host.liveness``): an IOC alarm on a still Heartbeat sees
  a zombie. A long task is not a stall: it awaits, or runs in a worker
  thread or process; its limit is its own ``timeout_s``;
- it flushes the logs and calls ``os._exit(1)`` when the loop stays stalled
  for ``exit_after_s``, or after ``max_stuck_cycles`` heartbeat puts failed
  in a row (the IOC unreachable), so a supervisor (systemd
  ``Restart=on-failure``, Kubernetes) restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated

import msgspec

from bridgehost.config import WatchdogConfig
from bridgehost.errors import InvalidField
from bridgehost_epics import transport as pva
from bridgehost_epics.names import StandardPVs

if TYPE_CHECKING:
    from bridgehost.host import Host

log = logging.getLogger(__name__)

Positive = Annotated[float, msgspec.Meta(gt=0)]
EXIT_CODE = 1


class HeartbeatConfig(WatchdogConfig, kw_only=True):
    """``[[watchdogs]] kind = "epics-heartbeat"``. Times in seconds."""

    prefix: Annotated[str, msgspec.Meta(min_length=1)]
    period_s: Positive = 1.0
    tolerance_s: Positive = 5.0
    """The loop may be stalled this long before the heartbeat stops."""
    exit_after_s: Positive = 60.0
    """The loop stalled this long: exit 1."""
    max_stuck_cycles: Annotated[int, msgspec.Meta(ge=1)] = 10
    """This many failed heartbeat puts in a row: exit 1."""
    put_timeout_s: Positive = 2.0
    transport: str = ""


class Heartbeat:
    """The watchdog: ``start()`` runs its thread, ``stop()`` ends it."""

    def __init__(self, config: HeartbeatConfig, host: Host):
        if config.exit_after_s < config.tolerance_s:
            raise InvalidField("exit_after_s", f"{config.exit_after_s} is less than tolerance_s ({config.tolerance_s})",
                               "the heartbeat must stop (tolerance_s) before the process exits (exit_after_s)")
        pva.resolve_name(host, config)
        self.config = config
        self.host = host
        self.pv = StandardPVs(config.prefix).heartbeat
        self.pulses = 0
        self.stuck = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {self.pv}", daemon=True)

    async def start(self) -> None:
        self._transport = pva.find(self.host, self.config)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a put in flight ends within put_timeout_s
            await asyncio.to_thread(self._thread.join, self.config.put_timeout_s + self.config.period_s + 1)

    def _run(self) -> None:
        if self._transport is not None:  # an embedded server starts after the watchdogs
            while not self._transport.started.wait(0.1):
                if self._stop.is_set():
                    return
        ctxt = pva.thread_context(self._transport)
        try:
            self._pulse_until_stopped(ctxt)
        finally:
            ctxt.close()

    def _pulse_until_stopped(self, ctxt) -> None:
        cfg = self.config
        state, stalled_since = 1, None
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += cfg.period_s
            stalled = self.host.liveness.stalled_for()
            if stalled >= cfg.exit_after_s:
                self._exit(f"the event loop has not advanced for {stalled:.1f} s (exit_after_s = {cfg.exit_after_s})")
            if stalled >= cfg.tolerance_s:
                if stalled_since is None:
                    stalled_since = stalled
                    log.error("event loop stalled for %.1f s: %s stops pulsing (exit in %.1f s if it stays stalled)",
                              stalled, self.pv, cfg.exit_after_s - stalled)
                continue
            if stalled_since is not None:
                log.warning("event loop advances again: %s pulses again", self.pv)
                stalled_since = None
            try:
                ctxt.put(self.pv, state, timeout=cfg.put_timeout_s, get=False)
            except Exception as e:
                self.stuck += 1
                reason = "no answer" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
                log.warning("heartbeat put %s failed (%d of %d in a row): %s", self.pv, self.stuck,
                            cfg.max_stuck_cycles, reason)
                if self.stuck >= cfg.max_stuck_cycles:
                    self._exit(f"{self.stuck} heartbeat puts to {self.pv} failed in a row (max_stuck_cycles)")
                next_at = time.monotonic() + cfg.period_s  # a timed-out put already took its time
                continue
            if self.stuck:
                log.info("%s answers again after %d failed put(s)", self.pv, self.stuck)
            self.stuck = 0
            self.pulses += 1
            state ^= 1

    def _exit(self, reason: str) -> None:
        log.critical("exiting with code %d so a supervisor restarts bridgehost: %s", EXIT_CODE, reason)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):  # exiting anyway: flush what can be
                handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)
