"""The ``systemd`` watchdog kind: tells systemd through sd_notify that the
host is ready, what it is doing, and that its event loop is alive.

The protocol is sd_notify(3)'s: newline-separated ``KEY=VALUE`` assignments
in one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace). It is a stable, documented
interface of a few lines, so it is spoken here rather than through
libsystemd (``systemd-python`` needs its C headers to build; the pure
``sdnotify`` package is unmaintained).

With ``Type=notify`` and ``WatchdogSec=`` in the unit (``examples/systemd/``):

- ``READY=1`` (with ``MAINPID``) once every component has started;
- ``WATCHDOG=1`` every ``period_s`` (default: half of ``WatchdogSec``, read
  from ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises) from a thread
  of its own, but only while ``host.liveness.stalled_for()`` is within
  ``stall_tolerance_s``: when the event loop stalls the pings stop, and
  systemd kills and restarts the service once ``WatchdogSec`` passes without
  one. This is epics-bridge's heartbeat that stops pulsing when the main
  loop stalls (epics-bridge 2.1.0, https://pypi.org/project/epics-bridge/); if the loop recovers first,
  the pings resume;
- ``STATUS=...`` (shown by ``systemctl status``) when it changes: serving,
  the jobs running and waiting, a stall;
- ``STOPPING=1`` when the host begins its shutdown.

Without ``$NOTIFY_SOCKET`` (not started by systemd with ``Type=notify``) it
logs a warning and does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

from bridgehost.config import PositiveFloat, WatchdogConfig

if TYPE_CHECKING:
    from bridgehost.host import Host

log = logging.getLogger(__name__)


def notify_address(value: str) -> str:
    """The socket address ``$NOTIFY_SOCKET`` names: a path, or for
    ``@name`` the abstract-namespace address ``"\\0name"`` (sd_notify(3))."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends sd_notify datagrams to one socket; safe to call from any thread."""

    def __init__(self, address: str):
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._lock = threading.Lock()

    def send(self, **fields: object) -> bool:
        """Send ``KEY=VALUE`` lines, e.g. ``send(READY=1, STATUS="serving")``.
        Never blocks: a receiver whose queue is full (it is not reading)
        loses the datagram. Returns False (and logs a warning) if the
        datagram could not be sent."""
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with self._lock:
                self._socket.sendto(message.encode(), socket.MSG_DONTWAIT, self.address)
            return True
        except OSError as e:
            log.warning("sd_notify to %r failed: %s", self.address.replace("\0", "@"), e)
            return False

    def close(self) -> None:
        self._socket.close()


class SystemdWatchdogConfig(WatchdogConfig, kw_only=True):
    """``[[watchdogs]] kind = "systemd"``."""

    period_s: PositiveFloat | None = None
    """Seconds between WATCHDOG=1 pings. Default: half of the unit's
    ``WatchdogSec`` (``$WATCHDOG_USEC``); without it, no pings are sent."""
    stall_tolerance_s: PositiveFloat = 5.0
    """Pings stop while the event loop has been stalled longer than this many seconds."""


class SystemdWatchdog:
    """READY, STATUS, WATCHDOG and STOPPING for systemd (see the module doc)."""

    def __init__(self, config: SystemdWatchdogConfig, host: Host):
        self.config = config
        self.host = host
        self.notifier: Notifier | None = None
        self.period_s: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = ""

    async def start(self) -> None:
        """Read the environment systemd set; start pinging if it asks for a
        watchdog. Sends nothing yet: READY comes once the host runs."""
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            log.warning(
                "systemd watchdog: $NOTIFY_SOCKET is not set (not started by systemd with Type=notify): "
                "it sends nothing"
            )
            return
        self.notifier = Notifier(notify_address(address))
        self.period_s = self._period()
        if self.period_s is not None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._ping, name="bridgehost-systemd-watchdog", daemon=True)
            self._thread.start()

    def _period(self) -> float | None:
        usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
        if pid and pid.isdigit() and int(pid) != os.getpid():
            log.info("systemd watchdog: WATCHDOG_PID=%s is another process: no pings from this one", pid)
            return None
        interval = int(usec) / 1e6 if usec and usec.isdigit() and int(usec) > 0 else None
        if interval is None:
            if self.config.period_s is None:
                log.info("systemd watchdog: the unit sets no WatchdogSec: READY and STATUS only")
            return self.config.period_s
        if self.config.period_s is not None and self.config.period_s >= interval:
            log.warning(
                "systemd watchdog: period_s = %s s but WatchdogSec is %s s: systemd will kill the host; "
                "use a period below WatchdogSec (half is usual)", self.config.period_s, interval
            )
        return self.config.period_s or interval / 2

    def ready(self) -> None:
        """The host runs: ``READY=1``. Called by the ``host_started`` hook."""
        if self.notifier is not None:
            self._status = self._serving()
            self.notifier.send(READY=1, MAINPID=os.getpid(), STATUS=self._status)

    def stopping(self) -> None:
        """The host stops: ``STOPPING=1``. Called by the ``host_stopping`` hook."""
        if self.notifier is not None:
            self._status = "stopping"
            self.notifier.send(STOPPING=1, STATUS=self._status)

    def _serving(self) -> str:
        lanes = list(self.host.lanes.values())
        running = sum(len(lane.running) for lane in lanes)
        waiting = sum(len(lane.waiting) for lane in lanes)
        return f"serving {len(lanes)} task(s): {running} job(s) running, {waiting} waiting"

    def _ping(self) -> None:
        assert self.notifier is not None and self.period_s is not None
        stalled_before = False
        while not self._stop.wait(self.period_s):
            stalled = self.host.liveness.stalled_for()
            if stalled > self.config.stall_tolerance_s:
                if not stalled_before:
                    log.error(
                        "event loop stalled for %.1f s (tolerance %.1f s): withholding systemd watchdog pings",
                        stalled, self.config.stall_tolerance_s,
                    )
                    self._status = f"event loop stalled for {stalled:.1f} s: watchdog pings withheld"
                    self.notifier.send(STATUS=self._status)
                stalled_before = True
                continue
            if stalled_before:
                log.warning("event loop running again: systemd watchdog pings resume")
                stalled_before = False
            fields: dict[str, object] = {"WATCHDOG": 1}
            if self._status not in ("", "stopping"):  # STATUS only between READY and STOPPING
                status = self._serving()
                if status != self._status:
                    self._status = fields["STATUS"] = status
            self.notifier.send(**fields)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None
