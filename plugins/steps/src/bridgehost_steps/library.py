"""Steps bridgehost-steps publishes itself (``register_steps``)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec

from bridgehost_steps.errors import PauseRequest
from bridgehost_steps.steps import step


class Delay(msgspec.Struct, forbid_unknown_fields=True):
    """Data of ``delay``: how long to wait, in seconds."""

    seconds: Annotated[float, msgspec.Meta(ge=0)]


@step(data=Delay, point=float, summary="wait data.seconds seconds; pausable; point: seconds already waited")
async def delay(data: Delay, context) -> dict[str, float]:
    """Wait ``data.seconds`` seconds (a soak, a settle time).

    Pausable: a pause stops the clock, a resume goes on with what is left.
    Its point is the seconds already waited, so a jump to ``2.5`` waits
    ``seconds - 2.5`` more. Location ``{"elapsed_s", "remaining_s"}``;
    duration estimate: the remaining seconds.
    """
    context.pausable = True
    elapsed = min(float(context.point or 0.0), data.seconds)
    while True:
        remaining = data.seconds - elapsed
        context.send_location({"elapsed_s": round(elapsed, 3), "remaining_s": round(remaining, 3)})
        context.send_duration(remaining)
        started = time.monotonic()
        try:
            await context.wait(asyncio.sleep(remaining))
        except PauseRequest:
            elapsed += time.monotonic() - started
            context.send_location({"elapsed_s": round(elapsed, 3), "remaining_s": round(data.seconds - elapsed, 3)})
            await context.checkpoint()
        else:
            context.send_location({"elapsed_s": data.seconds, "remaining_s": 0.0})
            context.send_duration(0.0)
            return {"waited_s": data.seconds}
