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

from bridgehost_steps.context import ProcessContext
from bridgehost_steps.controller import Announcement, StepsController
from bridgehost_steps.errors import JumpRequest, PauseRequest, ProcessFailureError, SwapRequest
from bridgehost_steps.helpers import run_actions, run_sync, shield
from bridgehost_steps.machine import Answer, Control, State
from bridgehost_steps.steps import step
from bridgehost_steps.values import Analysis, FileCreatedEffect, GenericDiagnostic, export

__all__ = [
    "Analysis",
    "Announcement",
    "Answer",
    "Control",
    "FileCreatedEffect",
    "GenericDiagnostic",
    "JumpRequest",
    "PauseRequest",
    "ProcessContext",
    "ProcessFailureError",
    "State",
    "StepsController",
    "SwapRequest",
    "export",
    "run_actions",
    "run_sync",
    "shield",
    "step",
]
