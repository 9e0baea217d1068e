"""Log PVs: recent log lines on ``<prefix>{Debug,Info,Warning,Error}Log``,
and the host's log level and silenced loggers set from ``LogLevel`` and
``SilencedLoggers`` through monitors.

Each log PV holds the last ``lines`` lines of its level (CRITICAL goes to
ErrorLog), newest last. Its record decides the form, found when its channel
connects (EPICS record reference, waveform ``FTVL``):

- a CHAR (or UCHAR) waveform, as in ``bridgehost.db``: the lines joined by
  newlines, read as a long string (the usual form of strings longer than
  40 characters), the newest lines within 8191 bytes;
- a STRING waveform, as in epics-bridge's databases: one element per line,
  a line longer than an element's 39 bytes (``MAX_STRING_SIZE`` 40 with its
  NUL) split over several, the newest ``NELM`` elements kept;
- anything else: one WARNING naming the PV, its type and ``log_pvs = false``,
  and the PV is left alone.

A PV is rewritten at most ``rate_hz`` times a second, whatever the logging
rate, so a flood of log lines cannot flood the network.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import threading
from typing import Any

import numpy as np
from p4p.client.asyncio import Context
from p4p.nt.scalar import ntstringarray

from bridgehost_epics.convert import long_string
from bridgehost_epics.handshake import PutQueue
from bridgehost_epics.names import LOG_LEVELS, StandardPVs

MAX_BYTES = 8191
"""The shipped waveforms' NELM less one: the newest lines that fit are kept."""
STRING_BYTES = 39
"""The bytes of one STRING element (EPICS ``MAX_STRING_SIZE`` 40, less its NUL)."""


class _Form(enum.Enum):
    CHAR = "CHAR waveform"
    STRING = "STRING waveform"
    OTHER = "other"


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
    publisher task on the loop; the publisher writes through ``writer``, a
    queue of the log PVs' own: a log PV that does not answer (a database
    without them) holds up each of its writes for the put timeout, and a
    handshake's writes must never wait behind those.
    """

    def __init__(self, ctxt: Context, writer: PutQueue, pvs: StandardPVs, lines: int, rate_hz: float):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.ctxt = ctxt
        self.writer = writer
        self.pvs = pvs
        self.period_s = 1.0 / rate_hz
        self.lines = lines
        self.recent: dict[str, collections.deque[str]] = {level: collections.deque(maxlen=lines) for level in LOG_LEVELS}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._silencer = _Silencer()
        self._tasks: list[asyncio.Task[Any]] = []
        self._subscriptions: list[Any] = []
        self._forms: dict[str, tuple[_Form, int]] = {}
        """PV -> its form and NELM, once its channel connected."""
        self._tried: set[str] = set()

    def pvs_written(self) -> list[str]:
        """The log PVs, for the trigger to connect before it is armed."""
        return [self.pvs.log_pv(level) for level in LOG_LEVELS]

    async def learn(self, values: dict[str, Any]) -> None:
        """Note the form of each log PV among ``values`` (``{pv: value or
        exception}``, as ``PutQueue.connect`` returns them) that answered."""
        for pv, value in values.items():
            if pv in self.pvs_written() and not isinstance(value, Exception):
                self._forms[pv] = await self._form_of(pv, value)

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
        with contextlib.suppress(RuntimeError):  # the loop has closed: the host is gone, the lines with it
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- loop side ---------------------------------------------------------

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                texts = {level: list(self.recent[level]) for level in dirty}
            writes = []
            for level, lines in texts.items():
                pv = self.pvs.log_pv(level)
                if pv not in self._forms and pv not in self._tried:  # once; the trigger asks again on reconnection
                    self._tried.add(pv)
                    await self.learn(await self.writer.connect([pv]))
                form, nelm = self._forms.get(pv, (_Form.CHAR, 0))  # not answering: the put says why
                if form is not _Form.OTHER:
                    writes.append(self.writer.put(pv, _encode(lines, form, nelm), optional=True))
            # one round at a time: writes to PVs that do not answer (each put_timeout_s) never pile up
            await asyncio.gather(*writes)
            await asyncio.sleep(self.period_s)  # the rate limit: later lines wait and merge

    async def _form_of(self, pv: str, value: Any) -> tuple[_Form, int]:
        if isinstance(value, ntstringarray):
            return _Form.STRING, await self._nelm(pv, default=self.lines)
        if isinstance(value, np.ndarray) and value.dtype in (np.int8, np.uint8):
            return _Form.CHAR, 0
        ftvl = (await self.writer.connect([pv + ".FTVL"]))[pv + ".FTVL"]
        kind = f"FTVL={ftvl.choice}" if hasattr(ftvl, "choice") else f"a {type(value).__name__} value"
        logging.getLogger(__name__).warning(
            "log PV %s is %s: the log PVs must be waveforms of FTVL=CHAR (one long string, as in bridgehost.db) "
            "or FTVL=STRING (one line per element); not writing to it. Fix the record, or set log_pvs = false "
            "in the epics trigger to turn the log PVs off", pv, kind)
        return _Form.OTHER, 0

    async def _nelm(self, pv: str, default: int) -> int:
        nelm = (await self.writer.connect([pv + ".NELM"]))[pv + ".NELM"]
        return default if isinstance(nelm, Exception) else int(nelm)

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


def _encode(lines: list[str], form: _Form, nelm: int) -> Any:
    """The value to put to a log PV of ``form`` holding the newest of ``lines``."""
    if form is _Form.STRING:
        pieces = [piece for line in lines for piece in _split(line)]
        return pieces[-nelm:] if nelm > 0 else pieces
    data = "\n".join(lines).encode("utf-8", "replace")
    if len(data) > MAX_BYTES:  # keep the newest lines that fit, starting at a line
        data = data[-MAX_BYTES:]
        data = data[data.find(b"\n") + 1:] if b"\n" in data else data
    return long_string(data)


def _split(line: str) -> list[str]:
    """``line`` in pieces of at most STRING_BYTES bytes of UTF-8, cut between characters."""
    pieces, piece, size = [], "", 0
    for char in line:
        n = len(char.encode("utf-8", "replace"))
        if size + n > STRING_BYTES:
            pieces.append(piece)
            piece, size = "", 0
        piece += char
        size += n
    return [*pieces, piece]
