"""Task functions the observability tests configure as ``callable`` targets
(``target = "bhprom_tasks:interlock"``); the tests put this folder on the
host's sys.path."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from bridgehost.errors import TaskFailed


def interlock(params: dict[str, Any]) -> None:
    raise TaskFailed("interlock open: the rig door is open\nsecond line of detail", {"door": "open"})


async def hold(params: dict[str, Any]) -> dict[str, bool]:
    """Run until the file ``params["release"]`` exists."""
    release = pathlib.Path(params["release"])
    while not release.exists():
        await asyncio.sleep(0.01)
    return {"released": True}
