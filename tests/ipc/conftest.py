"""Fixtures for the bridgehost-ipc tests: a real ZmqTransport on an asyncio
loop in a background thread, real sockets to it, and a small fake host.

Every endpoint is ``tcp://127.0.0.1:*`` (the OS picks a free port) or an
``ipc://`` path in a temporary folder.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import msgspec
import pytest
import zmq

from bridgehost.config import Config
from bridgehost.errors import JobError
from bridgehost.jobs import Outcome, Request, Status
from bridgehost_ipc.client import Client
from bridgehost_ipc.protocol import CommandMessage, decode
from bridgehost_ipc.transport import ZmqTransport, ZmqTransportConfig
from bridgehost_ipc.trigger import ZmqTrigger, ZmqTriggerConfig

WAIT_S = 5.0
"""Upper bound for anything a test waits for; reached only when it fails."""


class LoopThread:
    """An asyncio loop running in a daemon thread, as the host's loop would."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = WAIT_S) -> Any:
        """Run ``coro`` on the loop and return its result."""
        return self.submit(coro).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Start ``coro`` on the loop; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a plain function on the loop thread (the transport is not thread-safe)."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.run(wrapper())

    def close(self) -> None:
        self.run(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


async def _cancel_all() -> None:
    """Cancel what a test left running on the loop (e.g. a fake job that was never released)."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Gate:
    """An asyncio.Event on the loop that the test opens from its own thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.event = asyncio.Event()

    def open(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self) -> None:
        await self.event.wait()


class FakeHost:
    """The part of ``bridgehost.host.Host`` the transport and trigger use.

    Tasks: ``echo`` returns its params; ``fail`` ends TASK_FAIL with data
    ``{"reason": ...}``; ``gated`` waits for ``gate`` to open. ``submitted``
    lists every Request received, in order.
    """

    name = "test-rig"

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.transports: dict[str, Any] = {}
        self.config = Config(source="test.toml")
        self.gate = Gate(loop)
        self.submitted: list[Request] = []
        self.refused: list[Any] = []  # what the transport refused itself, by cause (Host.note_refusal)
        self.running: set[asyncio.Task[None]] = set()  # held, so a running job is not garbage-collected
        self.tasks: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]] = {
            "echo": self._echo,
            "fail": self._fail,
            "gated": self._gated,
        }

    def task_names(self) -> list[str]:
        return sorted(self.tasks)

    def note_refusal(self, cause: Any) -> None:
        self.refused.append(cause)

    def submit(self, request: Request, *, wanted: Callable[[], bool] | None = None) -> asyncio.Future[Outcome]:
        self.submitted.append(request)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        task = self.tasks.get(request.task)
        if task is None:
            error = f"no task named {request.task!r} (tasks: {', '.join(self.task_names())})"
            future.set_result(Outcome(job_id=request.id, task=request.task, status=Status.REJECTED, error=error))
        else:
            job = asyncio.create_task(self._run(task, request, future))
            self.running.add(job)
            job.add_done_callback(self.running.discard)
        return future

    async def _run(self, task: Any, request: Request, future: asyncio.Future[Outcome]) -> None:
        try:
            data, status, error = await task(request.params), Status.SUCCESS, ""
        except JobError as e:
            data, status, error = e.data, e.status, str(e)
        future.set_result(Outcome(job_id=request.id, task=request.task, status=status, data=data, error=error))

    async def _echo(self, params: dict[str, Any]) -> Any:
        return params

    async def _fail(self, params: dict[str, Any]) -> Any:
        from bridgehost.errors import TaskFailed

        raise TaskFailed("force limit exceeded", {"reason": "interlock", "status": "not-a-status"})

    async def _gated(self, params: dict[str, Any]) -> Any:
        await self.gate.wait()
        return {"released": True}


def wait_response(client: Client, tid: int) -> CommandMessage:
    """Block until ``client`` has the response to ``tid``; fail after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while (response := client.take_response(tid)) is None:
        assert time.monotonic() < deadline, f"no response to transaction id {tid} within {WAIT_S} s"
        client.poll(0.05)
    return response


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; fail after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


class Rig:
    """A started ZmqTransport (and, by default, a ZmqTrigger) on a FakeHost,
    with helpers to talk to it over real sockets."""

    def __init__(self, loop: LoopThread, *, trigger: bool = True, **config: Any):
        self.loop = loop
        self.host = FakeHost(loop.loop)
        config.setdefault("endpoint", "tcp://127.0.0.1:*")
        self.config = ZmqTransportConfig(kind="zmq", **config)
        self.transport = ZmqTransport(self.config, self.host)
        self.host.transports["zmq"] = self.transport
        if trigger:
            ZmqTrigger(ZmqTriggerConfig(kind="zmq"), self.host)
        self.loop.run(self.transport.start())
        self.endpoint = self.transport.endpoint
        self._sockets: list[zmq.Socket] = []
        self._clients: list[Client] = []

    def client(self, **kwargs: Any) -> Client:
        client = Client(self.endpoint, **kwargs)
        self._clients.append(client)
        return client

    def raw(self, socket_type: int = zmq.DEALER) -> zmq.Socket:
        """A plain pyzmq socket connected to the transport; recv times out after WAIT_S."""
        sock = zmq.Context.instance().socket(socket_type)
        sock.setsockopt(zmq.RCVTIMEO, int(WAIT_S * 1000))
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self._sockets.append(sock)
        return sock

    @staticmethod
    def exchange(sock: zmq.Socket, *frames: bytes) -> CommandMessage:
        """Send ``frames`` as one message and decode the one-frame answer."""
        sock.send_multipart(list(frames))
        return decode(sock.recv_multipart()[-1])

    def assert_serves(self, sock: zmq.Socket) -> None:
        """The host still answers a good request on ``sock``."""
        ok = self.exchange(sock, message(transaction_id=99, data={"x": 1}))
        assert (ok.transaction_id, ok.success, ok.data) == (99, True, {"x": 1})

    wait_response = staticmethod(wait_response)
    wait_until = staticmethod(wait_until)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for sock in self._sockets:
            sock.close(linger=0)
        self.loop.run(self.transport.stop(), timeout=30)


@pytest.fixture
def waits() -> types.SimpleNamespace:
    """``waits.response(client, tid)`` and ``waits.until(condition, what)``."""
    return types.SimpleNamespace(response=wait_response, until=wait_until)


def message(**fields: Any) -> bytes:
    """A frame holding a JSON object: a valid request unless ``fields`` override."""
    body = {"transaction_id": 1, "timecode": 0, "topic": "echo", "message_type": "request", "data": {}}
    body.update(fields)
    return msgspec.json.encode({k: v for k, v in body.items() if v is not ...})


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def make_rig(loop_thread: LoopThread) -> Iterator[Callable[..., Rig]]:
    """``make_rig(trigger=True, **ZmqTransportConfig fields) -> Rig``, stopped at teardown."""
    rigs: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        rig = Rig(loop_thread, **kwargs)
        rigs.append(rig)
        return rig

    yield make
    for rig in reversed(rigs):
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """A transport with the zmq trigger on a fake host with tasks echo, fail, gated."""
    return make_rig()


@pytest.fixture
def frame() -> Callable[..., bytes]:
    """``frame(**fields) -> bytes``: a request frame with fields overridden
    (``field=...`` removes one)."""
    return message
