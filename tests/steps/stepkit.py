"""Harnesses for the steps tests (imported by the test modules; the
conftest puts this folder on sys.path).

``Harness``: one ``Run`` on the test's own loop, no host, for the state
machine. ``running_host``: a real ``Host`` with the steps plugin (and the
ipc plugin when a zmq transport is configured), test steps published by name
through ``register_steps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bridgehost import hookimpl
from bridgehost.config import parse_config
from bridgehost.errors import JobError
from bridgehost.host import Host
from bridgehost.jobs import Job, Request
from bridgehost.plugins import load_plugins
from bridgehost_steps.controller import Announcement, StepsController
from bridgehost_steps.machine import State
from bridgehost_steps.run import Run
from bridgehost_steps.run_types import Limits, ProgramStep, Topic
from bridgehost_steps.steps import define

WAIT_S = 10.0
"""Upper bound for anything a test waits for; reached only when it fails."""


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``condition()``; fail after WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.001)
    assert condition(), what


class Harness:
    """A ``Run`` of ``processes`` (one: kind step; several (name, fn): a
    sequence) executing on the running loop, its announcements recorded."""

    def __init__(
        self,
        *processes: Any,
        kind: str | None = None,
        data: Any = None,
        point: Any = None,
        index: int = 0,
        recovery_timeout_s: float = WAIT_S * 3,
        halt_timeout_s: float = WAIT_S * 3,
    ):
        entries = [p if isinstance(p, tuple) else (f"s{i}", p) for i, p in enumerate(processes)]
        program = [ProgramStep(name, define(name, fn), data) for name, fn in entries]
        self.announcements: list[tuple[Topic, dict[str, Any]]] = []
        self.run = Run(
            Job(Request(task="probe")),
            kind or ("sequence" if len(program) > 1 else "step"),
            program,
            limits=Limits(recovery_timeout_s, halt_timeout_s),
            sink=lambda run, topic, event: self.announcements.append((topic, event.data)),
            index=index,
            point=point,
        )
        self.task = asyncio.create_task(self.run.execute())

    @property
    def state(self) -> State:
        return self.run.state

    async def reach(self, state: State) -> None:
        await until(lambda: self.run.state is state, f"state {state}")

    def transitions(self) -> list[tuple[str | None, str, str]]:
        return [(d["previous"], d["event"], d["state"]) for t, d in self.announcements if t is Topic.STATE]

    def of(self, topic: Topic) -> list[dict[str, Any]]:
        return [d for t, d in self.announcements if t is topic]

    async def outcome(self) -> tuple[str, Any]:
        """("ok", data) or (status name, the JobError); fails after WAIT_S."""
        try:
            async with asyncio.timeout(WAIT_S):
                return "ok", await self.task
        except JobError as e:
            return e.status.name, e


class StepsPlugin:
    """A test plugin publishing ``steps`` (name -> process) by name."""

    def __init__(self, steps: dict[str, Any]):
        self.steps = steps

    @hookimpl
    def register_steps(self, registry):
        for name, process in self.steps.items():
            registry.add(name, process)


@contextlib.asynccontextmanager
async def running_host(
    text: str, steps: dict[str, Any] | None = None, source: Path | str = "test.toml"
) -> AsyncIterator[tuple[Host, StepsController, list[Announcement]]]:
    """A started Host from TOML ``text``; yields it, its controller and the
    list every announcement is appended to. Stopped at the end."""
    extra = [("teststeps", StepsPlugin(steps))] if steps else []
    plugins = load_plugins(load=["steps", "ipc"], extra=extra)
    host = Host(parse_config(tomllib.loads(text), plugins, source=str(source)), plugins)
    controller = StepsController.of(host)
    seen: list[Announcement] = []
    controller.subscribe(seen.append)
    await host.start()
    try:
        yield host, controller, seen
    finally:
        await host.stop(grace_s=WAIT_S)


class HostThread:
    """``running_host`` on an event loop in a background thread, so the test
    thread can talk to it over real ZeroMQ sockets with the blocking Client."""

    def __init__(self, text: str, steps: dict[str, Any] | None = None, source: Path | str = "test.toml"):
        import threading

        self._args = (text, steps, source)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="steps-host", daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_S * 3), "host did not start"
        if self._error is not None:
            raise self._error

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_host(*self._args) as (host, controller, seen):
                self.host, self.controller, self.seen = host, controller, seen
                self.endpoint = host.transports["zmq"].endpoint if "zmq" in host.transports else None
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:
            self._error = e
            self._ready.set()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the host's loop (the controller is not thread-safe)."""

        async def wrapper() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(WAIT_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT_S * 3)


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` from a plain thread until truthy; fail after WAIT_S."""
    import time

    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)
    return value
