"""Task functions the EPICS tests configure as ``callable`` tasks
(importable as ``epics_tasks`` with this folder on PYTHONPATH)."""

import os
import threading
import time

from bridgehost.errors import TaskFailed
from bridgehost_epics import io

_gate = threading.Event()


def trivial():
    return {"ok": True}


def slow(params):
    time.sleep(float(params.get("sleep_s", 0.3)))
    return {"slept": params.get("sleep_s", 0.3)}


def crash():
    raise ZeroDivisionError("the task's own bug")


def fail():
    raise TaskFailed("interlock open")


def read_missing(params):
    return {"value": io.get(params["pv"], timeout=0.5)}


async def block_loop(params):
    """Blocks the host's event loop (the bug the heartbeat guards against)."""
    time.sleep(float(params.get("sleep_s", 60)))


def log_lines(params):
    import logging

    logger = logging.getLogger(params.get("logger", "rig.task"))
    for i in range(int(params.get("n", 3))):
        logger.warning("line %d from the task", i)
    logger.info("info from the task")
    logger.debug("debug from the task")


_calls = {"n": 0}


def alternate():
    """Succeeds on odd calls, fails (Task Fail) on even ones."""
    _calls["n"] += 1
    if _calls["n"] % 2 == 0:
        raise TaskFailed(f"call {_calls['n']} fails on purpose")
    return {"call": _calls["n"]}


def crash_once():
    """Crashes on the first call, succeeds after."""
    _calls["n"] += 1
    if _calls["n"] == 1:
        raise ZeroDivisionError("first call crashes")
    return {"call": _calls["n"]}


def fail_when(params):
    """Fails (Task Fail) once the file ``params["file"]`` exists (the test
    decides when the run ends), or after 30 s."""
    deadline = time.monotonic() + 30.0
    while not os.path.exists(params["file"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    raise TaskFailed("failed when told to")
