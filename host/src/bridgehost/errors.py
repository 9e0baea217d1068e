"""Exceptions of the host and of tasks.

A task ends a job with a non-SUCCESS status by raising one of the
``JobError`` subclasses; any other exception is a ``Status.CRASH``.
"""

from __future__ import annotations

from typing import Any

from bridgehost.jobs import Status


class BridgehostError(Exception):
    """Base of every error bridgehost raises on purpose."""


class ConfigError(BridgehostError):
    """A config file is wrong. ``str()`` names the file, the key path, what was
    expected and what was found. The CLI exits with code 2 on it."""

    def __init__(self, source: str, key: str, message: str, hint: str = ""):
        self.source = source
        self.key = key
        self.message = message
        self.hint = hint
        where = f"{source}: {key}" if key else source
        text = f"{where}: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class InvalidField(BridgehostError):
    """Raised by a component factory when a field of its own config is
    unusable (a target that does not import, an endpoint that does not
    parse). The host turns it into a ConfigError with the full key path
    (``tasks[2].target``), so factories need not know where they sit."""

    def __init__(self, field: str, message: str, hint: str = ""):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.hint = hint


class UnknownKindError(ConfigError):
    """A config names a component kind that no loaded plugin registers."""


class PluginLoadError(BridgehostError):
    """A plugin failed to import or to register; raised (chained to the
    original exception) when a config selects one of its kinds."""


class JobError(BridgehostError):
    """Raised by a task to end its job with ``status``; ``data`` goes into the
    Outcome (e.g. a ``traceback`` string)."""

    status: Status = Status.CRASH

    def __init__(self, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.data = data or {}


class TaskFailed(JobError):
    """The task ran and reports a logic failure (``Status.TASK_FAIL``)."""

    status = Status.TASK_FAIL


class IOFailure(JobError):
    """Reading or writing the outside world failed (``Status.IO_FAILURE``)."""

    status = Status.IO_FAILURE


class TaskCrashed(JobError):
    """The task's code raised or its process died (``Status.CRASH``)."""

    status = Status.CRASH


class Skipped(JobError):
    """The task decided there was nothing to do (``Status.SKIPPED``)."""

    status = Status.SKIPPED


class InvalidRequest(JobError):
    """The request's params are unusable (``Status.REJECTED``): a bad id, an
    unknown script, a missing field. Raised before any work starts."""

    status = Status.REJECTED
