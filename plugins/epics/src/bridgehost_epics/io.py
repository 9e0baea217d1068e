"""Get and put PVs from a task, with timeouts and typed errors.

epics-bridge's ``epics_bridge.io`` (``pvget``/``pvput``; https://pypi.org/project/epics-bridge/), for
bridgehost tasks::

    from bridgehost_epics import io

    def move(params):
        pvs = params["pvs"]                      # the trigger's PV interface
        velocity = io.get(pvs["velocity_sp"])    # float, int, str, ndarray ...
        io.put(pvs["position_rbv"], velocity * 0.5)

``get``/``put``/``put_many`` block (for sync tasks, which run in a worker
thread); ``aget``/``aput`` are their coroutine forms (for async tasks). Values
come back as plain Python/NumPy values (``bridgehost_epics.convert``).
Every failure (no answer within the timeout, a server refusal, a value the PV
cannot take) raises ``PVIOError``, a ``bridgehost.errors.IOFailure``: the
host ends the job with ``Status.IO_FAILURE`` (TaskStatus 2, "IO Failure").

The client is configured from the environment (``EPICS_PVA_ADDR_LIST``,
``EPICS_PVA_AUTO_ADDR_LIST``, ``EPICS_PVA_NAME_SERVERS``, ...), one p4p
context per distinct configuration, shared by every task of the process.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from typing import Any

from p4p.client import asyncio as pva_asyncio
from p4p.client import thread as pva_thread

from bridgehost.errors import IOFailure
from bridgehost_epics.convert import to_python

DEFAULT_TIMEOUT_S = 5.0


class PVIOError(IOFailure):
    """A get or put of ``pv`` failed; ``op`` is ``"get"`` or ``"put"``.
    Ends a job with ``Status.IO_FAILURE``."""

    def __init__(self, op: str, pv: str, reason: str):
        super().__init__(f"{op} {pv}: {reason}", {"pv": pv, "op": op})
        self.op = op
        self.pv = pv


_lock = threading.Lock()
_thread_contexts: dict[tuple[tuple[str, str], ...], pva_thread.Context] = {}


def _env_key() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("EPICS_PVA")))


def thread_context() -> pva_thread.Context:
    """The shared blocking p4p context for the current ``EPICS_PVA_*`` environment."""
    key = _env_key()
    with _lock:
        ctxt = _thread_contexts.get(key)
        if ctxt is None:
            ctxt = _thread_contexts[key] = pva_thread.Context("pva")
        return ctxt


def _reason(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout} s (is the IOC running and the PV name right?)"
    return f"{type(e).__name__}: {e}"


def get(pv: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """The value of ``pv`` as a plain value. Blocks up to ``timeout`` seconds.
    Raises ``PVIOError``."""
    try:
        return to_python(thread_context().get(pv, timeout=timeout))
    except Exception as e:
        raise PVIOError("get", pv, _reason(e, timeout)) from e


def put(pv: str, value: Any, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Write ``value`` to ``pv`` and wait until the server has applied it
    (the record has processed). Raises ``PVIOError``."""
    try:
        thread_context().put(pv, value, timeout=timeout, wait=True)
    except Exception as e:
        raise PVIOError("put", pv, _reason(e, timeout)) from e


def put_many(values: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """epics-bridge's ``pvput({pv: value, ...})``: write each, in order.
    Raises ``PVIOError`` naming the first PV that failed."""
    for pv, value in values.items():
        put(pv, value, timeout=timeout)


_loop_contexts: dict[tuple[int, tuple[tuple[str, str], ...]], pva_asyncio.Context] = {}


def async_context() -> pva_asyncio.Context:
    """The p4p asyncio context of the running loop and ``EPICS_PVA_*`` environment."""
    key = (id(asyncio.get_running_loop()), _env_key())
    ctxt = _loop_contexts.get(key)
    if ctxt is None:
        ctxt = _loop_contexts[key] = pva_asyncio.Context("pva")
    return ctxt


async def aget(pv: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """``get`` for async tasks. Raises ``PVIOError``."""
    try:
        async with asyncio.timeout(timeout):
            return to_python(await async_context().get(pv))
    except Exception as e:
        raise PVIOError("get", pv, _reason(e, timeout)) from e


async def aput(pv: str, value: Any, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """``put`` for async tasks. Raises ``PVIOError``."""
    try:
        async with asyncio.timeout(timeout):
            await async_context().put(pv, value, wait=True)
    except Exception as e:
        raise PVIOError("put", pv, _reason(e, timeout)) from e
