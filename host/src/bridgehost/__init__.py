"""bridgehost: a small plugin host that runs Python logic beside a control system, safely.

Plugin authors need ``hookimpl`` and the types re-exported here; see
``bridgehost.hookspecs`` for the hooks.

The names are imported on first use (PEP 562, https://peps.python.org/pep-0562/):
an analysis child imports ``bridgehost.text`` and ``bridgehost.imports``
without the plugin manager, and every module its zygote holds costs each
fork.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridgehost.lazy import lazy_exports

if TYPE_CHECKING:
    from bridgehost.hookspecs import hookimpl
    from bridgehost.jobs import EventKind, Job, JobEvent, Outcome, Request, Status

    __version__: str

__all__ = ["EventKind", "Job", "JobEvent", "Outcome", "Request", "Status", "__version__", "hookimpl"]

_exports = lazy_exports(
    __name__,
    {"hookimpl": "bridgehost.hookspecs", **dict.fromkeys(["EventKind", "Job", "JobEvent", "Outcome", "Request", "Status"], "bridgehost.jobs")},
)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("bridgehost")
        except PackageNotFoundError:  # running from a source tree that was not installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    return _exports(name)
