"""Log PVs: recent log lines on ``<prefix>{Debug,Info,Warning,Error}Log``,
and the host's log level and silenced loggers set from ``LogLevel`` and
``SilencedLoggers`` through monitors.

Each log PV holds the last ``lines`` lines of its level (CRITICAL goes to
ErrorLog), newest last, joined by newlines: a CHAR waveform read as a long
string (EPICS record reference, waveform; the usual form of strings
longer than 40 characters). A PV is rewritten at most ``rate_hz`` times a second, whatever
the logging rate, so a flood of log lines cannot flood the network.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Any

from p4p.client.asyncio import Context

from bridgehost_epics.convert import long_string
from bridgehost_epics.handshake import PutQueue
from bridgehost_epics.names import LOG_LEVELS, StandardPVs

MAX_BYTES = 8191
"""The shipped waveforms' NELM less one: the newest lines that fit are kept."""


def _bucket(levelno: int) -> str:
    for name in reversed(LOG_LEVELS):
        if levelno >= logging.getLevelName(name):
            return name
    return "DEBUG"


class _Silencer(logging.Filter):
    """Drops records of the silenced loggers and of their children."""

    def __init__(self) -> None:
        super().__init__()
        self.names: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == n or record.name.startswith(n + ".") for n in self.names)


class LogPVs(logging.Handler):
    """A logging handler on the root logger that publishes to the log PVs.

    ``emit`` (any thread) only appends to a bounded deque and wakes the
    publisher task on the loop; the publisher writes through ``writer``.
    """

    def __init__(self, ctxt: Context, writer: PutQueue, pvs: StandardPVs, lines: int, rate_hz: float):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.ctxt = ctxt
        self.writer = writer
        self.pvs = pvs
        self.period_s = 1.0 / rate_hz
        self.recent = {level: collections.deque(maxlen=lines) for level in LOG_LEVELS}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._silencer = _Silencer()
        self._tasks: list[asyncio.Task[Any]] = []
        self._subscriptions: list[Any] = []

    def start(self) -> None:
        root = logging.getLogger()
        root.addHandler(self)
        self._attach_silencer()
        self._tasks.append(self._loop.create_task(self._publish(), name="bridgehost-epics-log-pvs"))
        # notify_disconnect: a lost IOC is the trigger's to report, not each monitor's
        for pv, handler in ((self.pvs.log_level, self._on_level), (self.pvs.silenced_loggers, self._on_silenced)):
            self._subscriptions.append(self.ctxt.monitor(pv, handler, notify_disconnect=True))

    def stop(self) -> None:
        logging.getLogger().removeHandler(self)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._silencer)
        for sub in self._subscriptions:
            sub.close()
        for task in self._tasks:
            task.cancel()

    def _attach_silencer(self) -> None:
        for handler in logging.getLogger().handlers:
            if self._silencer not in handler.filters:
                handler.addFilter(self._silencer)

    # -- logging side (any thread) ----------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if not self._silencer.filter(record):
            return
        try:
            line = self.format(record).replace("\n", " | ")
        except Exception:
            self.handleError(record)
            return
        level = _bucket(record.levelno)
        with self._lock:
            self.recent[level].append(line)
            self._dirty.add(level)
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:
            pass  # the loop has closed: the host is gone, the lines with it

    # -- loop side ---------------------------------------------------------

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                texts = {level: list(self.recent[level]) for level in dirty}
            for level, lines in texts.items():
                self.writer.put(self.pvs.log_pv(level), self._encode(lines), optional=True)
            await asyncio.sleep(self.period_s)  # the rate limit: later lines wait and merge

    def _encode(self, lines: list[str]) -> Any:
        data = "\n".join(lines).encode("utf-8", "replace")
        if len(data) > MAX_BYTES:  # keep the newest lines that fit, starting at a line
            data = data[-MAX_BYTES:]
            data = data[data.find(b"\n") + 1:] if b"\n" in data else data
        return long_string(data)

    async def _on_level(self, value: Any) -> None:
        if isinstance(value, Exception):
            return
        index = int(value)
        if 0 <= index < len(LOG_LEVELS):
            level = LOG_LEVELS[index]
            if logging.getLogger().level != logging.getLevelName(level):
                logging.getLogger().setLevel(level)
                # p4p's DEBUG lines describe every PV write, the log PVs' own
                # included: each line would publish lines about itself.
                logging.getLogger("p4p").setLevel(max(logging.INFO, logging.getLevelName(level)))
                # at a level the new setting lets through, so the change itself is on record
                logging.getLogger(__name__).log(max(logging.WARNING, logging.getLevelName(level)),
                                                "log level set to %s by %s", level, self.pvs.log_level)

    async def _on_silenced(self, value: Any) -> None:
        if isinstance(value, Exception):
            return
        names = tuple(sorted({str(n).strip() for n in value if str(n).strip()}))
        if names != self._silencer.names:
            self._attach_silencer()
            self._silencer.names = names
            logging.getLogger(__name__).warning("silenced loggers set to %s by %s", ", ".join(names) or "none",
                                                self.pvs.silenced_loggers)
