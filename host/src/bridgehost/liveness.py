"""The host's liveness signal, readable from any thread.

A coroutine on the host's event loop stamps ``time.monotonic()`` every
``tick_s``. A watchdog thread (the heartbeat PV, sd_notify) reads
``stalled_for()``: how long past its due time the last stamp is. A job that
runs long does not stall the loop (it awaits); a script that blocks the loop
does. This is epics-bridge's "activity timestamp of the main thread"
(epics-bridge 2.1.0, "Isolated Heartbeat Monitor", https://pypi.org/project/epics-bridge/).
"""

from __future__ import annotations

import asyncio
import time


class Liveness:
    """Tracks whether the event loop advances. ``tick_s`` in seconds."""

    def __init__(self, tick_s: float = 0.25):
        self.tick_s = tick_s
        self._last = time.monotonic()

    def stamp(self) -> None:
        self._last = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds the loop is overdue (0.0 while it keeps ticking)."""
        return max(0.0, time.monotonic() - self._last - self.tick_s)

    async def run(self) -> None:
        """Stamp forever; run as a task on the loop being watched."""
        while True:
            self.stamp()
            await asyncio.sleep(self.tick_s)
