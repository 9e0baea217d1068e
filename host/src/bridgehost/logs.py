"""Logging setup for the ``bridgehost`` command.

Human-readable lines on stderr. A job's lines end with ``[task='<name>' job=<id> ref=<ref>]``
(its task, its job id and the source's id: the ZeroMQ transaction id), from
the LoggerAdapter every ``Job`` carries.
"""

from __future__ import annotations

import logging


class _JobFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id:
            ref = getattr(record, "ref", "")
            text += f" [task={getattr(record, 'task', '')!r} job={job_id}{f' ref={ref}' if ref else ''}]"
        return text


def configure(level: str = "INFO") -> None:
    """Send bridgehost's logs to stderr at ``level``, a logging level name
    (``bridgehost.config.LogLevel``: config and CLI have validated it)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_JobFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
