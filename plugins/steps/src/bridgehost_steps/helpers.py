"""Helpers for Automancer's process recipes (https://github.com/slietar/automancer): synchronous actions
inside a process.

A synchronous action (a driver call, ``smtplib``) blocks; it runs in a
worker thread so the event loop stays live. A thread cannot be cancelled,
so the action is *shielded*: on halt it runs to its end, then the
cancellation goes on (Automancer's ``am.shield(asyncio.to_thread(...))``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def shield(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to its end even if the caller is cancelled, then
    re-raise the ``CancelledError`` (Automancer's ``am.shield``).

    Unlike ``asyncio.shield`` alone, the caller does not move on while the
    action still runs: a halted process's cleanup starts after it.
    """
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True  # keep waiting for the action, then honour the cancellation
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result


async def run_sync(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread, shielded: ``await shield(asyncio.to_thread(...))``."""
    return await shield(asyncio.to_thread(function, *args))


async def run_actions(context: Any, *actions: Callable[[], Any]) -> list[Any]:
    """Run synchronous ``actions`` one after the other with ``run_sync``,
    with ``context.checkpoint()`` between two (Automancer's recipe "Execute multiple
    synchronous actions"): a pause stops the sequence there, a jump or swap
    is raised there. Returns their results."""
    results = []
    for i, action in enumerate(actions):
        if i:
            await context.checkpoint()
        results.append(await run_sync(action))
    return results
