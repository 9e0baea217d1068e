"""bridgehost-steps: long-running async processes after Automancer's (https://github.com/slietar/automancer).

The process API::

    import asyncio
    from bridgehost_steps import JumpRequest, PauseRequest, ProcessFailureError, run_sync

    async def process(data, context):          # or process(context)
        context.pausable = True
        for index in range(10):
            await run_sync(one_synchronous_action, index)
            context.send_location({"index": index})
            await context.checkpoint()

Task kinds ``step`` and ``sequence`` (``bridgehost_steps.task``), the control
API (``bridgehost_steps.controller.StepsController``), the ZeroMQ topics
(``bridgehost_steps.control``). Reference: ``docs/steps.md``.
"""

from typing import TYPE_CHECKING

from bridgehost.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs see
    from bridgehost_steps.context import ProcessContext
    from bridgehost_steps.controller import Announcement, StepsController
    from bridgehost_steps.errors import JumpRequest, PauseRequest, ProcessFailureError, SwapRequest
    from bridgehost_steps.helpers import run_actions, run_sync, shield
    from bridgehost_steps.machine import Answer, Control, State
    from bridgehost_steps.steps import step
    from bridgehost_steps.values import Analysis, FileCreatedEffect, GenericDiagnostic, export

# Resolved on first use (PEP 562): loading the plugin for the command line
# (``bridgehost --help``) imports none of the runtime.
_EXPORTS = {
    "ProcessContext": "bridgehost_steps.context",
    "Announcement": "bridgehost_steps.controller",
    "StepsController": "bridgehost_steps.controller",
    "JumpRequest": "bridgehost_steps.errors",
    "PauseRequest": "bridgehost_steps.errors",
    "ProcessFailureError": "bridgehost_steps.errors",
    "SwapRequest": "bridgehost_steps.errors",
    "run_actions": "bridgehost_steps.helpers",
    "run_sync": "bridgehost_steps.helpers",
    "shield": "bridgehost_steps.helpers",
    "Answer": "bridgehost_steps.machine",
    "Control": "bridgehost_steps.machine",
    "State": "bridgehost_steps.machine",
    "step": "bridgehost_steps.steps",
    "Analysis": "bridgehost_steps.values",
    "FileCreatedEffect": "bridgehost_steps.values",
    "GenericDiagnostic": "bridgehost_steps.values",
    "export": "bridgehost_steps.values",
}
__all__ = [  # the names of _EXPORTS, spelt out for type checkers and linters
    "Analysis", "Announcement", "Answer", "Control", "FileCreatedEffect", "GenericDiagnostic",
    "JumpRequest", "PauseRequest", "ProcessContext", "ProcessFailureError", "State",
    "StepsController", "SwapRequest", "export", "run_actions", "run_sync", "shield", "step",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
