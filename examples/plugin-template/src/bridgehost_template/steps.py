"""Steps: ``async process(context)`` functions in the style of Automancer
processes, run by the step runtime (bridgehost-steps).

The context API used here: ``context.data`` (the starting data, a dict),
``context.point`` (where to resume, or None), ``context.pausable``,
``context.send_location(...)``, ``await context.checkpoint()`` (where a
pause takes effect, and a halt or jump arrives).
"""

from __future__ import annotations

import asyncio
from typing import Any


async def ramp(context: Any) -> dict[str, Any]:
    """Ramp a setpoint from 0 to ``data["target"]`` in ``data["steps"]`` steps
    (defaults 100.0 and 5), ``data["dwell_s"]`` seconds each (default 0.01).

    Each step reports ``{"index": i, "setpoint": value}`` as its location,
    then reaches a checkpoint, so it can be paused between steps; resumed at
    a point ``{"index": i}``, it starts from step ``i``. Returns
    ``{"setpoint": final value, "steps": count}``.
    """
    data = context.data or {}
    target, steps = float(data.get("target", 100.0)), int(data.get("steps", 5))
    dwell = float(data.get("dwell_s", 0.01))
    context.pausable = True
    start = _index(context.point)
    setpoint = 0.0
    for index in range(start, steps):
        setpoint = target * (index + 1) / steps
        context.send_location({"index": index, "setpoint": setpoint})
        await asyncio.sleep(dwell)  # stands in for moving the hardware
        await context.checkpoint()
    return {"setpoint": setpoint, "steps": steps}


def _index(point: Any) -> int:
    if point is None:
        return 0
    return int(point["index"] if isinstance(point, dict) else point.index)
