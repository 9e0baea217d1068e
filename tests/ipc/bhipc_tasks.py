"""Task functions the integration tests configure as ``callable`` targets
(``target = "bhipc_tasks:calculate_results"``); the tests put this folder on
the host's sys.path."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from typing import Any

from bridgehost.errors import TaskFailed

GATE = threading.Event()
"""``gated`` runs until a test sets this."""


def calculate_results(ctx: dict[str, Any]) -> dict[str, float]:
    """AutoCore's example analysis: max and mean of the force trace."""
    force = ctx.get("raw_data", {}).get("trace", {}).get("force", [])
    if not force:
        return {"max_force": 0.0, "avg_force": 0.0}
    return {"max_force": max(force), "avg_force": sum(force) / len(force)}


def interlock(params: dict[str, Any]) -> None:
    raise TaskFailed("interlock open: the rig door is open", {"door": "open"})


async def gated() -> dict[str, bool]:
    while not GATE.is_set():
        await asyncio.sleep(0.005)
    return {"released": True}


async def mark_then_wait(params: dict[str, Any]) -> None:
    """Write ``params["marker"]`` (so a test in another process knows the job
    runs), then run until cancelled."""
    pathlib.Path(params["marker"]).write_text("running")
    await asyncio.Event().wait()
