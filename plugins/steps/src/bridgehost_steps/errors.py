"""The exceptions of the process API (Automancer's, https://github.com/slietar/automancer).

``checkpoint()``, ``wait()`` and ``receive()`` raise ``JumpRequest``,
``PauseRequest`` and ``SwapRequest`` to hand a control request to the
process. A process raises ``ProcessFailureError`` for an expected failure.
"""

from __future__ import annotations

from typing import Any

from bridgehost.errors import JobError
from bridgehost.jobs import Status


class ControlRequest(Exception):
    """Base of the requests a process may catch."""


class JumpRequest(ControlRequest):
    """Move to ``point`` (from ``old_point``). If it escapes the process, the
    process is created again at ``point``."""

    def __init__(self, point: Any, old_point: Any = None):
        super().__init__(f"jump to {point!r}")
        self.point = point
        self.old_point = old_point


class PauseRequest(ControlRequest):
    """Raised by ``wait()`` after cancelling its awaitable: catch it and call
    ``context.checkpoint()``, which returns once resumed. Letting it escape
    fails the process (Automancer, "Pausing")."""

    def __init__(self) -> None:
        super().__init__("pause requested")


class SwapRequest(ControlRequest):
    """Replace the process's input by ``data`` (was ``old_data``). If it
    escapes, the process is created again with ``data``."""

    def __init__(self, data: Any, old_data: Any = None):
        super().__init__("swap requested")
        self.data = data
        self.old_data = old_data


class ProcessFailureError(Exception):
    """An expected failure ("invalid credentials"): the job ends TASK_FAIL
    unless the user retries or skips it. Any other exception is a CRASH."""


class Halted(JobError):
    """The job was halted by a control request (``Status.CANCELLED``)."""

    status = Status.CANCELLED
