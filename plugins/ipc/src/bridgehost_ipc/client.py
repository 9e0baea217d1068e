"""A synchronous client for bridgehost's ZeroMQ transport, for control loops and scripts.

Two styles, as AutoCore's ``CommandClient``::

    from bridgehost_ipc.client import Client

    with Client("tcp://127.0.0.1:5555") as client:
        # a control loop: send, then poll once per tick without blocking
        tid = client.send("python.run_analysis", {"run_id": "r1", "script": "analyze_traction.py"})
        ...
        response = client.take_response(tid)   # None until it has arrived
        if response is not None and response.success:
            max_force = response.data["max_force"]

        # a script: block until the answer (or TimeoutError)
        print(client.call("host.ping").data)

A ``Client`` owns one DEALER socket and is not thread-safe: use one per
thread. Plain ``zmq`` (no asyncio); nothing ever unpickles.
"""

from __future__ import annotations

import collections
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, Self

import msgspec
import zmq

from bridgehost_ipc.protocol import (
    DEFAULT_ENDPOINT,
    MAX_TOPIC_LENGTH,
    MAX_TRANSACTION_ID,
    CommandMessage,
    MessageType,
    ProtocolError,
    decode,
    encode,
    new_request,
)
from bridgehost_ipc.security import CurveError, apply_client_curve

_READY_TRY_S = 0.5
"""How long ``wait_ready`` waits for each ping: a socket that connects
before the host binds may lose the first."""

__all__ = ["DEFAULT_ENDPOINT", "Client", "CommandMessage", "CurveError", "SendQueueFull"]

log = logging.getLogger("bridgehost.ipc.client")


class SendQueueFull(RuntimeError):
    """``send`` could not queue the message: ``sndhwm`` messages are already
    waiting for the host (it is down, unreachable or not reading). Nothing
    was sent; retry later."""


class Client:
    """A DEALER connected to a bridgehost ``zmq`` transport.

    ``endpoint``: the host's ROUTER address, e.g. ``"tcp://127.0.0.1:5555"``
    or ``"ipc:///run/bridgehost.sock"``. Connecting never blocks or fails
    for a host that is not up yet: messages queue until it is. Raises
    ``ValueError`` for an endpoint ZeroMQ cannot parse.

    Keyword options:

    - ``context``: a ``zmq.Context`` to use (default: the process-wide instance).
    - ``routing_id``: this client's ZeroMQ routing id, 1-255 bytes not
      starting with a zero byte (default: a random one). Keeping it across a
      reconnect lets a response still in the host reach this client.
    - ``sndhwm``: how many messages may wait to be sent before ``send``
      raises ``SendQueueFull`` (default 1000).
    - ``max_unclaimed``: how many arrived responses are kept for
      ``take_response`` before the oldest is dropped (default 10000).
    - ``max_broadcasts``: how many broadcasts are kept for
      ``take_broadcasts`` before the oldest is dropped (default 1000).
    - ``linger_s``: on ``close``, how long unsent messages may still be
      delivered in the background (default 1.0; ``close`` never waits).
    - ``curve_server_key`` and ``curve_client_key``: for a host that requires
      CURVE (docs/security.md), the host's public certificate file
      (``server.key``) and this client's certificate with its secret key
      (``client.key_secret``), as ``zmq.auth.create_certificates`` writes
      them. Both or neither; ``CurveError`` (a ``ValueError``) if a file is
      unusable. A host that does not know this client's key never answers:
      ``call`` times out, or ``send`` raises ``SendQueueFull`` once the
      refused connection is gone (and the host logs the refusal).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        context: zmq.Context | None = None,
        routing_id: bytes | None = None,
        sndhwm: int = 1000,
        max_unclaimed: int = 10_000,
        max_broadcasts: int = 1000,
        linger_s: float = 1.0,
        curve_server_key: str | os.PathLike[str] | None = None,
        curve_client_key: str | os.PathLike[str] | None = None,
    ):
        self.endpoint = endpoint
        self._linger_ms = int(linger_s * 1000)
        self._max_unclaimed = max_unclaimed
        self._next_tid = 1
        self._responses: dict[int, CommandMessage] = {}
        self._abandoned: dict[int, None] = {}  # tids whose call() timed out, oldest first: a late answer is dropped
        self._broadcasts: collections.deque[CommandMessage] = collections.deque(maxlen=max_broadcasts)
        self._socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._socket.setsockopt(zmq.ROUTING_ID, routing_id or b"bh-" + uuid.uuid4().hex.encode())
        self._socket.setsockopt(zmq.SNDHWM, sndhwm)
        self._socket.setsockopt(zmq.LINGER, self._linger_ms)
        try:
            if (curve_server_key is None) != (curve_client_key is None):
                raise CurveError("CURVE needs both curve_server_key and curve_client_key")
            if curve_server_key is not None and curve_client_key is not None:
                apply_client_curve(self._socket, curve_server_key, curve_client_key)
        except CurveError:
            self._socket.close(linger=0)
            raise
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as e:
            self._socket.close(linger=0)
            raise ValueError(
                f"cannot connect to {endpoint!r}: {e.strerror}; expected e.g. tcp://127.0.0.1:5555 or ipc:///path"
            ) from e

    # -- sending -----------------------------------------------------------

    def send(self, topic: str, data: Any = None) -> int:
        """Queue a ``request`` for ``topic`` with ``data`` (any JSON value;
        a task takes an object; None -> ``{}``) and return its transaction id
        (1, 2, ... wrapping after 2**32-1, never 0). Never blocks.

        Raises ``SendQueueFull`` if ``sndhwm`` messages are already waiting,
        ``TypeError`` if ``data`` is not JSON-encodable, ``ValueError`` for an
        empty topic or one over 256 characters.
        """
        return self._send(topic, data, MessageType.REQUEST)

    def heartbeat(self, topic: str = "heartbeat") -> int:
        """Queue a ``heartbeat``; the host echoes it (``message_type`` heartbeat,
        same transaction id), collected with ``take_response``. Sending one
        at least every ``peer_ttl_s`` keeps this client on the broadcast list.
        Returns the transaction id; raises as ``send``."""
        return self._send(topic, None, MessageType.HEARTBEAT)

    def _send(self, topic: str, data: Any, message_type: MessageType) -> int:
        if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_LENGTH:
            raise ValueError(f"topic must be a string of 1 to {MAX_TOPIC_LENGTH} characters, got {topic!r:.80}")
        tid = self._next_tid
        try:
            payload = encode(new_request(tid, topic, data, message_type=message_type))
        except (TypeError, msgspec.EncodeError) as e:
            raise TypeError(f"data for topic {topic!r} is not JSON-encodable: {e}") from None
        try:
            self._socket.send(payload, flags=zmq.DONTWAIT)
        except zmq.Again:
            raise SendQueueFull(
                f"cannot send {topic!r} to {self.endpoint}: the send queue is full; "
                "the host is down, unreachable or not reading - retry later"
            ) from None
        self._next_tid = tid % MAX_TRANSACTION_ID + 1
        return tid

    # -- receiving ---------------------------------------------------------

    def take_response(self, tid: int) -> CommandMessage | None:
        """The response (or heartbeat answer) for transaction id ``tid`` if it
        has arrived, else None. Never blocks. A response is returned once:
        taking it forgets it. Broadcasts that arrive meanwhile are kept for
        ``take_broadcasts``."""
        self._drain()
        return self._responses.pop(tid, None)

    def take_broadcasts(self) -> list[CommandMessage]:
        """The broadcasts received since the last call, oldest first (at most
        ``max_broadcasts``; older ones were dropped). Never blocks."""
        self._drain()
        taken = list(self._broadcasts)
        self._broadcasts.clear()
        return taken

    def poll(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` seconds until a message has arrived; True
        if one has. For scripts that wait for a ``take_response``."""
        return bool(self._socket.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN))

    def call(self, topic: str, data: Any = None, timeout_s: float = 10.0) -> CommandMessage:
        """``send`` then wait for the response, up to ``timeout_s`` seconds.

        Returns the response whether it succeeded or not: check
        ``.success``, ``.data`` and ``.error_message``. Raises the builtin
        ``TimeoutError`` (naming topic, transaction id and endpoint) if none
        arrives in time; a late answer is then dropped. Raises as ``send``.
        """
        tid = self.send(topic, data)
        deadline = time.monotonic() + timeout_s
        while (response := self.take_response(tid)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abandoned[tid] = None
                if len(self._abandoned) > self._max_unclaimed:
                    del self._abandoned[next(iter(self._abandoned))]
                raise TimeoutError(
                    f"no response to {topic!r} (transaction id {tid}) from {self.endpoint} within {timeout_s} s; "
                    "is the host running and listening there?"
                )
            self.poll(remaining)
        return response

    def wait_ready(self, timeout_s: float = 30.0, *, alive: Callable[[], bool] | None = None) -> CommandMessage:
        """Call ``host.ping`` until the host answers, for up to ``timeout_s``
        seconds: for whoever has just started ``bridgehost run`` (a
        supervisor, a test, a benchmark). Returns the ping's response.

        ``alive``, if given, is asked before each try (e.g. ``lambda:
        proc.poll() is None``): once it is false, raises ``ConnectionError``
        at once instead of waiting out the time. Raises ``TimeoutError`` if
        the host has not answered in time.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if alive is not None and not alive():
                raise ConnectionError(f"the host at {self.endpoint} ended before it answered host.ping")
            try:
                return self.call("host.ping", timeout_s=min(_READY_TRY_S, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no answer to host.ping from {self.endpoint} within {timeout_s} s") from None

    def _drain(self) -> None:
        """Move every message that has arrived into the response dict or the broadcast deque."""
        while True:
            try:
                frames = self._socket.recv_multipart(flags=zmq.DONTWAIT)
            except zmq.Again:
                return
            try:
                message = decode(frames[-1])
            except ProtocolError as e:
                log.warning("dropping a message from %s that is not valid: %s", self.endpoint, e)
                continue
            if message.message_type is MessageType.BROADCAST:
                self._broadcasts.append(message)
                continue
            tid = message.transaction_id
            if self._abandoned.pop(tid, 0) is None:
                continue
            if tid == 0:  # the host could not tell which request this answers
                log.warning(
                    "error response from %s for an unidentified request: %s", self.endpoint, message.error_message
                )
                continue
            self._responses[tid] = message
            if len(self._responses) > self._max_unclaimed:
                oldest = next(iter(self._responses))
                del self._responses[oldest]
                log.warning("more than %d unclaimed responses: dropped transaction id %d", self._max_unclaimed, oldest)

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Close the socket (idempotent). Unsent messages may still go out for
        ``linger_s`` in the background; ``close`` itself never waits."""
        if not self._socket.closed:
            self._socket.close(linger=self._linger_ms)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.endpoint} next_tid={self._next_tid}>"
