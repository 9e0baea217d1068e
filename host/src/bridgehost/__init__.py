"""bridgehost: a small plugin host that runs Python logic beside a control system, safely.

Plugin authors need ``hookimpl`` and the types re-exported here; see
``bridgehost.hookspecs`` for the hooks.
"""

from importlib.metadata import PackageNotFoundError, version

from bridgehost.hookspecs import hookimpl
from bridgehost.jobs import EventKind, Job, JobEvent, Outcome, Request, Status

try:
    __version__ = version("bridgehost")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["EventKind", "Job", "JobEvent", "Outcome", "Request", "Status", "__version__", "hookimpl"]
