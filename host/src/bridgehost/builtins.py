"""The built-in plugin: the ``callable`` task kind and the ``systemd``
watchdog kind (``bridgehost.systemd``).

A ``callable`` task runs a plain Python function named in the config::

    [[tasks]]
    name = "motor.move"
    kind = "callable"
    target = "mypackage.motor:move"

The function takes no argument, or one: the request params (a dict), or the
``Job`` if its parameter is named ``job``. It may be sync or async. It
returns a dict (the result data), None (no data), or a ``Status`` (the
epics-bridge style ``return TaskStatus.SUCCESS``); it may raise a
``bridgehost.errors.JobError`` subclass to pick the status.

A sync function runs in a daemon thread of its own so the event loop stays
live. A thread cannot be killed: on timeout the job ends TIMEOUT at once but
the thread runs on to its end (or until the process exits: being a daemon,
it does not hold a stopping host open). Use the ``analysis`` kind (a process
per run) for code that may hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from typing import TYPE_CHECKING, Any

from bridgehost.config import TaskConfig
from bridgehost.errors import InvalidField
from bridgehost.hookspecs import hookimpl
from bridgehost.imports import import_object
from bridgehost.metrics import core_metrics
from bridgehost.systemd import SystemdWatchdog, SystemdWatchdogConfig

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.jobs import Job


class CallableTaskConfig(TaskConfig, kw_only=True):
    """``kind = "callable"``: ``target`` is ``"package.module:function"``."""

    target: str


class CallableTask:
    """Runs ``config.target`` for each job."""

    def __init__(self, config: CallableTaskConfig, host: Host):
        try:
            self.function = import_object(config.target)
        except Exception as e:
            raise InvalidField(
                "target",
                f"cannot import {config.target!r}: {type(e).__name__}: {e}",
                "give 'package.module:function' of a module importable by the host's Python",
            ) from e
        if not callable(self.function):
            raise InvalidField("target", f"{config.target!r} is not callable")
        params = list(inspect.signature(self.function).parameters.values())
        required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(required) > 1:
            raise InvalidField(
                "target",
                f"{config.target!r} takes {len(required)} arguments; a callable task's function takes none or one",
            )
        self._arg = "job" if required and required[0].name == "job" else ("params" if required else None)
        self._is_async = inspect.iscoroutinefunction(self.function)

    async def run(self, job: Job) -> Any:
        args = () if self._arg is None else ((job,) if self._arg == "job" else (job.params,))
        if self._is_async:
            return await self.function(*args)
        return await in_daemon_thread(self.function, *args)


async def in_daemon_thread(function: Any, *args: Any) -> Any:
    """``await function(*args)`` run in a new daemon thread, with the caller's
    context variables (the job's log fields).

    Not ``asyncio.to_thread``: the default executor's threads are joined
    when ``asyncio.run`` ends, so a sync task still running when the host
    stopped (cancelled after the grace, or timed out earlier) would hold the
    process open until it returned, and a supervisor's SIGTERM would not end it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():  # cancelled meanwhile: nobody waits
            future.set_result(value) if ok else future.set_exception(value)

    def work() -> None:
        try:
            outcome = (True, context.run(function, *args))
        except BaseException as e:
            outcome = (False, e)
        with contextlib.suppress(RuntimeError):  # the loop closed: the host is gone
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=f"bridgehost-{getattr(function, '__name__', 'task')}", daemon=True).start()
    return await future


@hookimpl
def register_tasks(registry):
    registry.add("callable", CallableTask, config=CallableTaskConfig, summary="a Python function, sync or async")


@hookimpl
def register_watchdogs(registry):
    registry.add(
        "systemd",
        SystemdWatchdog,
        config=SystemdWatchdogConfig,
        summary="sd_notify READY, STATUS and WATCHDOG pings while the event loop runs",
    )


@hookimpl
def host_started(host: Host) -> None:
    for watchdog in _systemd_watchdogs(host):
        watchdog.ready()


@hookimpl
def host_stopping(host: Host) -> None:
    for watchdog in _systemd_watchdogs(host):
        watchdog.stopping()


def _systemd_watchdogs(host: Host) -> list[SystemdWatchdog]:
    return [c.impl for c in host.components if isinstance(c.impl, SystemdWatchdog)]


@hookimpl
def register_metrics(metrics, host):
    core_metrics(metrics, host)
