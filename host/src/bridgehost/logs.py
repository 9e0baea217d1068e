"""Logging setup for the ``bridgehost`` command.

Two formats, chosen by ``[host] log_format`` or ``--log-format``:

- ``human`` (default): ``2026-04-20 12:00:00,123 INFO    bridgehost.job: SUCCESS in 0.012 s [task='python.run_analysis' job=3f2a... ref=17]``
- ``json``: one JSON object per line (JSON Lines), for a log collector::

    {"time": "2026-04-20T12:00:00.123+00:00", "level": "INFO", "logger": "bridgehost.job",
     "message": "SUCCESS in 0.012 s", "host": "rig", "pid": 4242,
     "job_id": "3f2a...", "task": "python.run_analysis", "ref": "17"}

Lines go to stderr and, when ``[host] log_file`` is set, also to that file,
rotated by size with the standard library's ``RotatingFileHandler``.

Repeated warnings of one cause (a client that floods, a full queue) go
through a ``RateLimitedLog``: at most ``burst`` lines per ``interval_s`` per
cause, and the next line logged says how many were left out.

Every line logged while a job runs carries its task, job id and ref (the
source's id, e.g. a transaction id): those of ``job.log`` directly, and
any other logger's through ``current_job``, a context variable the host sets
in the job's asyncio task (and that ``asyncio.to_thread`` carries into
worker threads).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from bridgehost.jobs import Job

LogFormat = Literal["human", "json"]
JOB_FIELDS = ("job_id", "task", "ref")

current_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("bridgehost_current_job", default=None)
"""The job whose asyncio task (or worker thread) is running, if any."""


class JobContext(logging.Filter):
    """Adds ``job_id``, ``task`` and ``ref`` of ``current_job`` to records
    that lack them. A handler filter, so it sees every logger's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        if job is not None and getattr(record, "job_id", None) is None:
            record.job_id, record.task, record.ref = job.id, job.task, job.request.ref
        return True


class HumanFormatter(logging.Formatter):
    """``time LEVEL logger: message [task='t' job=<id> ref=<ref>]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id:
            ref = getattr(record, "ref", "")
            text += f" [task={getattr(record, 'task', '')!r} job={job_id}{f' ref={ref}' if ref else ''}]"
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (RFC 3339, UTC, milliseconds),
    ``level``, ``logger``, ``message``, ``host``, ``pid``; ``job_id``,
    ``task``, ``ref`` for a job's lines; ``exception`` with the traceback
    when one was logged. No newline inside a line, whatever the message."""

    def __init__(self, host: str = "") -> None:
        super().__init__()
        self.host = host

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "host": self.host,
            "pid": record.process,
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None and (value or name != "ref"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return msgspec.json.encode(line, enc_hook=str).decode()


class LogFileHandler(logging.handlers.RotatingFileHandler):
    """The ``log_file`` handler: a ``RotatingFileHandler`` that, when the
    file cannot be written (a full disk, a vanished folder), says so once on
    stderr and then counts the lines lost instead of printing the standard
    library's traceback for each one; when writing works again it says how
    many were lost, in the file and on stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = 0
        """Lines not written since the file last worked."""
        self.lost_total = 0

    def emit(self, record: logging.LogRecord) -> None:
        lost = self.lost
        super().emit(record)  # calls handleError instead of raising
        if lost and self.lost == lost:  # written: the file works again
            note = f"bridgehost: writing to the log file {self.baseFilename} works again; {lost} line(s) were lost"
            self.lost = 0
            sys.stderr.write(note + "\n")
            with contextlib.suppress(Exception):
                if self.stream is not None:  # None while a rollover reopens it
                    self.stream.write(note + self.terminator)
                self.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # what is unwritten was counted as lost
            super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if self.lost == 0:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else repr(error)
            sys.stderr.write(
                f"bridgehost: cannot write to the log file {self.baseFilename}: {reason}; "
                "its lines are lost (counted) until it can be written again, stderr still gets every line\n"
            )
        self.lost += 1
        self.lost_total += 1


def configure(
    level: str = "INFO",
    *,
    format: LogFormat = "human",
    file: str | os.PathLike[str] | None = None,
    max_bytes: int = 10 << 20,
    backups: int = 5,
    host: str = "",
) -> None:
    """Send bridgehost's logs to stderr, and to ``file`` if given, at
    ``level`` (a ``bridgehost.config.LogLevel`` name) in ``format``.

    ``file`` is rotated when it would pass ``max_bytes`` bytes, keeping
    ``backups`` old files (``host.log.1`` ...); its folder must exist.
    ``host`` is the ``[host] name`` put in JSON lines. Replaces any handlers
    set before, so calling it again reconfigures. Raises ``OSError`` if the
    file cannot be opened.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if file is not None:
        handlers.append(LogFileHandler(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"))
    formatter = JsonFormatter(host) if format == "json" else HumanFormatter()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(JobContext())
        root.addHandler(handler)
    root.setLevel(level)


LOG_INTERVAL_S = 10.0
"""The default interval of a ``RateLimitedLog``, seconds."""


@dataclass
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """Logs lines of one cause at most ``burst`` times per ``interval_s``
    seconds; the rest are counted, and the next line of that cause that is
    logged ends with how many were left out since the last one
    (``"... (and 4,210 more like it, not logged)"``).

    A cause is any hashable naming *why* (``"queue_full"``, ``("busy",
    task)``): keep the set of causes small and fixed, never a peer or a
    request id, so one flood cannot hide another kind of line nor grow the
    table. ``flush()`` logs the counts still pending (at stop). Use it from
    one thread (the host's loop).
    """

    MAX_CAUSES = 1024
    """Windows kept; beyond it the ones with nothing pending are forgotten."""

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        interval_s: float = LOG_INTERVAL_S,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.interval_s = interval_s
        self.burst = burst
        self.clock = clock
        self.total = 0
        """Every line offered, logged or not."""
        self.suppressed = 0
        """Every line left out."""
        self._windows: dict[Hashable, _Window] = {}

    def log(
        self,
        level: int,
        cause: Hashable,
        msg: str,
        *args: Any,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> bool:
        """Log ``msg % args`` at ``level`` (to ``logger``, default this
        one's: a job's adapter keeps its fields) unless ``cause`` has had its
        ``burst`` in this interval; True if it was logged."""
        self.total += 1
        now = self.clock()
        window = self._windows.get(cause)
        pending = 0
        if window is None or now - window.start >= self.interval_s:
            pending = window.suppressed if window is not None else 0
            if window is None and len(self._windows) >= self.MAX_CAUSES:
                self._forget_idle()
            window = self._windows[cause] = _Window(now)
        if window.logged >= self.burst:
            window.suppressed += 1
            self.suppressed += 1
            return False
        window.logged += 1
        if pending:
            msg, args = f"{msg} (and %d more like it, not logged)", (*args, pending)
        (logger or self.logger).log(level, msg, *args)
        return True

    def warning(self, cause: Hashable, msg: str, *args: Any) -> bool:
        """``log(logging.WARNING, ...)``."""
        return self.log(logging.WARNING, cause, msg, *args)

    def flush(self) -> None:
        """Log one line per cause with lines still left out, and forget them."""
        for cause, window in list(self._windows.items()):
            if window.suppressed:
                self.logger.log(logging.WARNING, "%d more line(s) of cause %s not logged", window.suppressed, cause)
        self._windows.clear()

    def _forget_idle(self) -> None:
        self._windows = {c: w for c, w in self._windows.items() if w.suppressed}
        if len(self._windows) >= self.MAX_CAUSES:
            self.flush()
