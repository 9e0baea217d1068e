"""Functions the host tests name as ``callable`` task targets (``targets:NAME``)."""

import asyncio
import sys

from bridgehost.errors import InvalidRequest, IOFailure, Skipped, TaskFailed
from bridgehost.jobs import EventKind, Status

# Tests set these to gate a job until they release it.
gate: asyncio.Event | None = None


async def echo(params):
    return {"echo": params}


async def held(params):
    assert gate is not None
    await gate.wait()
    return {"n": params.get("n")}


async def sleep(params):
    await asyncio.sleep(params["s"])
    return {"slept": params["s"]}


def sync_add(params):
    return {"sum": params["a"] + params["b"]}


def no_args():
    return None


async def with_job(job):
    job.emit(EventKind.PROGRESS, {"fraction": 0.5})
    return {"job_id": job.id}


def boom(params):
    raise RuntimeError("kaput")


def exits(params):
    sys.exit(3)


def fail(params):
    kind = {"task": TaskFailed, "io": IOFailure, "skip": Skipped, "invalid": InvalidRequest}[params["as"]]
    raise kind(f"raised {kind.__name__}", {"detail": 1})


def returns_status(params):
    return Status[params["status"]]


def raises_timeout_error(params):
    raise TimeoutError("the device did not answer")


def two_args(a, b):
    return None


not_callable = 42


async def log_async(params):
    import logging

    logging.getLogger("acme.analysis").info("async step %s", params.get("n"))
    return {}


def log_sync(params):
    import logging

    logging.getLogger("acme.analysis").info("sync step %s", params.get("n"))  # in a worker thread
    return {}


async def block_loop(params):
    """Blocks the event loop (a sync sleep in a coroutine), then, still
    blocking it, sends ``TEST=unblocking`` to the unix datagram socket
    ``params["socket"]``, so a test knows where the stall ended."""
    import socket
    import time

    time.sleep(params["s"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"TEST=unblocking", params["socket"])
    return {}
