"""The ``zmq`` transport: a ZeroMQ ROUTER socket on the host's event loop.

Clients connect a DEALER (or a REQ) and send one-frame JSON messages
(``bridgehost_ipc.protocol``). The transport answers every request exactly
once, with the request's transaction id:

- malformed frames, multipart messages, oversized frames and messages a
  client may not send get an error response at once (and a WARNING line);
- ``heartbeat`` messages are echoed; ``host.ping`` and ``host.status``
  (``Host.status()``) are answered directly;
- other requests go to the handler registered for their topic
  (``add_handler``; the rules are ``bridgehost_ipc.routing``), each in its
  own asyncio task so a slow one never holds up the receive loop. The
  ``zmq`` trigger installs the catch-all handler ``"*"`` that hands
  requests to the host's tasks.

Endpoint checks are ``bridgehost_ipc.endpoints``, CURVE ``bridgehost_ipc.security``.

Config (``[[transports]] kind = "zmq"``): see ``ZmqTransportConfig``.
Wire format: ``docs/ipc-protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

import bridgehost
from bridgehost.config import TransportConfig
from bridgehost.errors import BridgehostError
from bridgehost.jobs import Status, now_ms
from bridgehost.logs import RateLimitedLog
from bridgehost.status import RefusalCause
from bridgehost.text import cut_middle
from bridgehost_ipc.endpoints import bind_hint, check_endpoint, descriptor_warnings, exposure_warnings
from bridgehost_ipc.peers import MONITOR_EVENTS, Connections, Listener, Outboxes
from bridgehost_ipc.protocol import (
    MAX_ERROR_CHARS,
    PROTOCOL_VERSION,
    CommandMessage,
    MessageType,
    ProtocolError,
    decode,
    encode,
    error_response,
    recover_ids,
    scan_transaction_id,
)
from bridgehost_ipc.routing import TopicRoutes
from bridgehost_ipc.security import secure_ipc_file, server_curve

if TYPE_CHECKING:
    from bridgehost.host import Host

log = logging.getLogger("bridgehost.ipc")

requester: contextvars.ContextVar[bytes] = contextvars.ContextVar("bridgehost_ipc_requester")
"""The routing id of the client whose request the current handler task
answers (set by the transport in each handler's own task)."""

Handler = Callable[[CommandMessage], Awaitable[CommandMessage]]
"""``async handler(request) -> response``: build the response with
``request.reply(data)`` or ``request.fail(message, status=...)``. The
transport stamps it with the request's transaction id and topic whatever the
handler put there; an exception becomes a CRASH error response."""

MiB = 2**20
BACKSTOP_FACTOR = 4
"""libzmq's MAXMSGSIZE is this many times ``max_frame_bytes``: a frame
between the two gets an error response, a larger one drops the connection."""
LIBZMQ_SNDHWM = 8
"""libzmq's send high-water mark per peer (ZMQ_SNDHWM, in messages; its
default is 1000): what does not fit waits in the transport's own outbox,
bounded in bytes (``peer_queue_bytes``, ``queue_bytes``)."""
NOTICE_HEADROOM = 64 * 1024
"""Bytes past the outbox bounds allowed for the short error responses that
stand for dropped ones."""
PREFIX_BYTES = 64
"""How much of a malformed frame a WARNING line shows."""
_DRAIN_LIMIT = 10_000
WATCH_S = 0.05
"""How often the socket monitor is read when no message arrives, seconds."""
GONE = "the client disconnected"
"""The cancel message of a request whose client went away."""
MAX_PEERS_SHOWN = 20
"""``host.status`` lists at most this many peers (``peer_count`` counts them all)."""


class ZmqTransportConfig(TransportConfig, kw_only=True):
    """``[[transports]] kind = "zmq"``: the host's ZeroMQ ROUTER socket."""

    endpoint: Annotated[str, msgspec.Meta(pattern=r"^(tcp|ipc|inproc)://\S+$")] = "tcp://127.0.0.1:5555"
    """Where the ROUTER binds. Loopback only by default; a port of ``*``
    (``tcp://127.0.0.1:*``) lets the OS pick a free one."""
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=2**30)] = 16 * MiB
    """Largest frame answered normally, bytes; a larger one gets an error
    response, one over ``4 x`` this is cut off by libzmq (the peer is disconnected)."""
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 1024
    """Requests being handled at once; beyond it a request is answered BUSY at once."""
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 256
    """Connections (``tcp://`` or ``ipc://``) open at once, handshake done
    or not. Past it, connections are closed at once, counted and logged:
    first those no message came in on, oldest first, then the newest (a
    DEALER reconnects by itself). Each open connection holds a file
    descriptor and libzmq's buffers: without a bound, one client opening
    connections takes every descriptor the host may open."""
    peer_queue_bytes: Annotated[int, msgspec.Meta(ge=0, le=2**32)] = 8 * MiB
    """Bytes of messages the host keeps for one client that does not read
    them (beyond the ``LIBZMQ_SNDHWM`` messages libzmq holds); a response
    past it is dropped and counted, and answered by a short error response
    while those fit. A queue that is empty always takes one message."""
    queue_bytes: Annotated[int, msgspec.Meta(ge=0, le=2**34)] = 64 * MiB
    """The same bound for all clients together."""
    peer_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A DEALER peer gets broadcasts while it has sent anything within this many seconds."""
    stop_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    """On stop: seconds to let in-flight requests finish, then again to
    flush queued responses to the network, before the socket is closed."""
    curve_secret_key: str | None = None
    """CURVE: the host's certificate with its secret key (``server.key_secret``
    from ``zmq.auth.create_certificates``); relative to the config file's
    folder. With it, only clients whose public key is in
    ``curve_authorized_keys`` can connect. See docs/security.md."""
    curve_authorized_keys: str | None = None
    """CURVE: a folder of the public certificates (``NAME.key``) of the
    clients allowed to connect; read at start. Required with ``curve_secret_key``."""
    ipc_mode: Annotated[int, msgspec.Meta(ge=0, le=0o777)] = 0o600
    """The permission bits of an ``ipc://`` socket file (connecting needs
    write permission): owner only by default; ``0o660`` lets the group in."""


class TransportError(BridgehostError):
    """The transport cannot run (the endpoint cannot be bound)."""


class ZmqTransport:
    """The host side of the IPC protocol: a ROUTER socket and topic routing.

    Built by the host from a ``ZmqTransportConfig``; ``start()``/``stop()``
    run on the host's loop. ``endpoint`` is the bound address once started
    (a ``*`` port resolved). Other plugins reach it through
    ``host.transports[name]`` and call ``add_handler`` and ``broadcast``.
    """

    def __init__(self, config: ZmqTransportConfig, host: Host):
        check_endpoint(config.endpoint)
        self.config = config
        self.host = host
        self.name = config.name or config.kind
        self.endpoint = config.endpoint
        self.curve = server_curve(config.curve_secret_key, config.curve_authorized_keys, host.config.base_dir, self.name)
        self.lines = RateLimitedLog(log)
        """Repeated warnings (bad messages, BUSY, a peer not reading): one line per cause per 10 s."""
        self.routes: TopicRoutes[Handler] = TopicRoutes()
        """Who answers which topic; ``add_handler`` fills it."""
        self.routes.add("host.ping", self._ping)
        self.routes.add("host.status", self._status)
        self._peers: dict[bytes, float] = {}  # DEALER peer routing id -> time.monotonic() last heard
        self._pruned_at = time.monotonic()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._requests_of: dict[bytes, dict[asyncio.Task[None], int]] = {}  # routing id -> its requests' tasks -> tid
        self.connections = Connections()
        """Which routing ids are still connected (socket monitor events)."""
        self.connections_refused = 0
        """Connections closed because more than ``max_connections`` were open, since start."""
        self._listener: Listener | None = None
        self.outboxes = Outboxes(config.peer_queue_bytes, config.queue_bytes)
        """Messages waiting for clients whose libzmq queue is full."""
        self._flusher: asyncio.Task[None] | None = None
        self._monitor: zmq.Socket | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._broadcast_seq = 0
        self._stopping = False
        self._ctx: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._receiver: asyncio.Task[None] | None = None

    # -- routing -----------------------------------------------------------

    def add_handler(self, pattern: str, handler: Handler) -> None:
        """Route requests to ``handler`` by topic (``bridgehost_ipc.routing``).

        ``pattern`` is an exact topic (``"steps.pause"``), a prefix ending in
        ``.*`` (``"steps.*"`` matches every topic that starts with
        ``"steps."``), or ``"*"``, the catch-all the ``zmq`` trigger installs.
        An exact topic wins over a prefix, a longer prefix over a shorter.
        Call it on the host's loop (a hook, a start()) or before the host
        starts. Raises ``ValueError`` for a malformed pattern or one already
        routed.
        """
        try:
            self.routes.add(pattern, handler)
        except ValueError as e:
            raise ValueError(f"{e} on zmq transport {self.name!r}") from None

    def remove_handler(self, pattern: str) -> None:
        """Stop routing ``pattern`` (as given to ``add_handler``); no error if absent."""
        self.routes.remove(pattern)

    def patterns(self) -> list[str]:
        """The routed topic patterns, sorted (``host.ping``, ``steps.*``, ``*``...)."""
        return self.routes.patterns()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Bind the ROUTER and start receiving. Raises ``TransportError`` if
        the endpoint cannot be bound (in use, bad address, no permission)."""
        ctx = zmq.asyncio.Context()  # our own, so stop() can wait for its queues to flush
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable sends raise, so gone peers are noticed
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client reconnecting with its routing id takes it over
        sock.setsockopt(zmq.MAXMSGSIZE, BACKSTOP_FACTOR * self.config.max_frame_bytes)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, LIBZMQ_SNDHWM)
        if self.curve is not None:
            self.curve.apply(ctx, sock)
        self._monitor = _monitor(ctx, sock, MONITOR_EVENTS | (self.curve.MONITOR_EVENTS if self.curve else 0))
        try:
            sock.bind(self.config.endpoint)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as e:
            await self._abandon(ctx, sock)
            raise TransportError(
                f"cannot bind ZeroMQ ROUTER to {self.config.endpoint}: {e.strerror}; {bind_hint(e.errno)}"
            ) from e
        try:
            secure_ipc_file(self.endpoint, self.config.ipc_mode)
        except OSError as e:
            await self._abandon(ctx, sock)
            raise TransportError(
                f"cannot set the mode of the socket file of {self.endpoint} to {self.config.ipc_mode:#o}: "
                f"{e.strerror}; put the socket in a folder the host's user owns"
            ) from e
        self._ctx, self._socket, self._stopping = ctx, sock, False
        self._listener = Listener(self.endpoint)
        self._receiver = asyncio.create_task(self._receive_loop(), name=f"zmq-{self.name}-receive")
        self._watcher = asyncio.create_task(self._watch_connections(), name=f"zmq-{self.name}-peers")
        if self.curve is not None:
            log.info(
                "zmq transport %r: CURVE on, %d authorized key(s) in %s",
                self.name, self.curve.count, self.curve.authorized,
            )
        log.info("zmq transport %r listening on %s", self.name, self.endpoint)

    def check(self) -> list[str]:
        """Warnings for ``bridgehost check``, logged by the host at start:
        an endpoint others can reach without CURVE, an abstract socket,
        ``max_connections`` past what this process may open."""
        return [
            *exposure_warnings(self.config.endpoint, curve=self.curve is not None),
            *descriptor_warnings(self.name, self.config.max_connections),
        ]

    async def _abandon(self, ctx: zmq.asyncio.Context, sock: zmq.asyncio.Socket) -> None:
        """Undo a start that failed before the socket was in use."""
        self._close_monitor(sock)
        if self.curve is not None:
            await self.curve.stop(sock)
        sock.close(linger=0)
        ctx.term()

    def _close_monitor(self, sock: zmq.asyncio.Socket) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    async def stop(self) -> None:
        """Stop receiving, finish and send in-flight responses, close.

        Requests already received but not yet read are answered REJECTED.
        In-flight requests get ``stop_timeout_s`` to finish; those still
        running are cancelled and answered CANCELLED. Queued responses then
        get up to ``stop_timeout_s`` to reach the network before the socket
        closes. Never raises.
        """
        sock, ctx = self._socket, self._ctx
        if sock is None or ctx is None:
            return
        self._stopping = True
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
        await self._answer_unread(sock)
        timeout = self.config.stop_timeout_s
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout)
            if pending:
                log.warning(
                    "zmq transport %r: cancelling %d request(s) still in flight after %.1f s",
                    self.name, len(pending), timeout,
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)  # a handler that swallows the cancel is not waited for
        deadline = time.monotonic() + timeout
        while self.outboxes.size and time.monotonic() < deadline and await self._flush_once():
            await asyncio.sleep(0.01)  # clients still reading get what waits for them
        if self._flusher is not None:
            self._flusher.cancel()
        self.outboxes.clear()
        self._close_monitor(sock)
        self._socket = self._ctx = None
        if self.curve is not None:
            await self.curve.stop(sock)
        # A bounded linger, not 0: responses queued a moment ago must still go out.
        sock.close(linger=int(timeout * 1000))
        await asyncio.to_thread(ctx.term)
        self.lines.flush()
        log.info("zmq transport %r stopped", self.name)

    async def _answer_unread(self, sock: zmq.asyncio.Socket) -> None:
        for _ in range(_DRAIN_LIMIT):
            try:
                frames = await sock.recv_multipart(flags=zmq.DONTWAIT, copy=False)
            except zmq.ZMQError:
                return
            await self._on_frames(frames)

    # -- receiving ---------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._socket is not None
        sock = self._socket
        while True:
            try:
                frames = await sock.recv_multipart(copy=False)
            except zmq.ZMQError as e:
                if e.errno in (zmq.ETERM, zmq.ENOTSOCK):
                    return
                log.error("zmq transport %r: receive failed: %s", self.name, e)
                await asyncio.sleep(0.1)  # never spin on a persistent error
                continue
            try:
                await self._on_frames(frames)
            except Exception:  # a bug here must not stop the host answering
                log.exception("zmq transport %r: error handling a message", self.name)

    async def _on_frames(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        self._read_monitor()  # an ACCEPTED for this message's connection is read before it is filed
        with contextlib.suppress(zmq.ZMQError):
            self.connections.heard(identity, frames[0].get(zmq.SRCFD))
        self._bound_connections()  # after heard(): a connection just used is not the first to go
        # REQ puts an empty delimiter before the payload; DEALER does not.
        # Either way the reply goes back with the same envelope.
        if len(frames) > 1 and len(frames[1]) == 0:
            envelope, body = [identity, b""], frames[2:]
            self._peers.pop(identity, None)  # REQ cannot take unsolicited broadcasts
        else:
            envelope, body = [identity], frames[1:]
            self._heard(identity)
        try:
            message = self._parse(body)
        except ProtocolError as e:
            prefix = body[0].buffer[:PREFIX_BYTES].tobytes() if body else b""
            shown = f"; frame starts {prefix!r}" if prefix else ""
            self.lines.warning(
                "bad_message",
                "zmq transport %r: bad message from peer %s (transaction id %d): %s%s",
                self.name, identity.hex()[:16], e.transaction_id, e.message, shown,
            )
            await self._send(envelope, encode(error_response(e.transaction_id, e.topic, e.message)), e.transaction_id)
            return
        if message.message_type is MessageType.HEARTBEAT:
            answer = CommandMessage(
                transaction_id=message.transaction_id,
                timecode=now_ms(),
                topic=message.topic,
                message_type=MessageType.HEARTBEAT,
            )
            await self._send(envelope, encode(answer), message.transaction_id)
        elif self._stopping:
            self.host.note_refusal(RefusalCause.STOPPING)
            self.lines.warning(
                "stopping", "zmq transport %r: request for %r refused: the host is stopping", self.name, message.topic
            )
            reply = message.fail(f"host {self.host.name!r} is stopping; the request was not run")
            await self._send_response(envelope, message, reply)
        else:
            await self._dispatch(envelope, message)

    def _read_monitor(self) -> None:
        """Apply the socket monitor's pending events (connections accepted
        and closed, CURVE handshakes failed); never blocks."""
        monitor = self._monitor
        while monitor is not None:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.DONTWAIT))
            except zmq.ZMQError:
                return
            if self.curve is not None:
                self.curve.on_monitor_event(event["event"], event["value"])
            gone = self.connections.event(event["event"], event["value"])
            if gone:
                self._gone(gone)

    def _bound_connections(self) -> None:
        """Past ``max_connections`` open, close connections until the bound
        holds: first those no message came in on, oldest first (a client
        holding connections without using them, or a handshake never
        finished), then the newest. Clients being served keep theirs."""
        listener = self._listener
        if listener is None or self.connections.open <= self.config.max_connections:
            return
        # A monitor event can be lost (libzmq drops them when the monitor's
        # queue is full): forget descriptors that are no longer connections
        # on this endpoint before counting.
        for fd in self.connections.descriptors():
            if not listener.owns(fd):
                gone = self.connections.event(zmq.EVENT_DISCONNECTED, fd)
                if gone:
                    self._gone(gone)
        excess = self.connections.open - self.config.max_connections
        for fd in self.connections.eviction_order():
            if excess <= 0:
                break
            peer = listener.close(fd)
            if peer is None:
                continue
            self.connections.closing(fd)
            excess -= 1
            self.connections_refused += 1
            self.lines.warning(
                "max_connections",
                "zmq transport %r: connection from %s closed: more than max_connections (%d) were open "
                "(%d closed since start); a client holding many connections, or more clients than max_connections",
                self.name, peer, self.config.max_connections, self.connections_refused,
            )

    async def _watch_connections(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                self._read_monitor()
                self._bound_connections()
            except Exception:  # a bug here must not stop the watching
                log.exception("zmq transport %r: error reading socket monitor events", self.name)

    def _gone(self, identities: list[bytes]) -> None:
        """These peers disconnected: free what waits for them and withdraw
        their requests still in flight (a job still queued for one of them
        is never started: it ends CANCELLED)."""
        for identity in identities:
            self._peers.pop(identity, None)
            unsent = self.outboxes.discard([identity])
            withdrawn = {t: tid for t, tid in self._requests_of.pop(identity, {}).items() if not t.done()}
            for task in withdrawn:
                task.cancel(GONE)
            if unsent or withdrawn:
                tids = ", ".join(map(str, sorted(withdrawn.values())[:10])) + (", ..." if len(withdrawn) > 10 else "")
                self.lines.log(
                    logging.INFO, "withdrawn",
                    "zmq transport %r: peer %s disconnected: %d unsent message(s) dropped, %d request(s) withdrawn "
                    "(their responses are lost; a job still queued is not started)%s",
                    self.name, identity.hex()[:16], unsent, len(withdrawn),
                    f": transaction ids {tids}" if withdrawn else "",
                )

    def _forget_request(self, identity: bytes, task: asyncio.Task[None]) -> None:
        mine = self._requests_of.get(identity)
        if mine is not None:
            mine.pop(task, None)
            if not mine:
                del self._requests_of[identity]

    def connected(self, identity: bytes) -> bool:
        """Whether the client with routing id ``identity`` is still connected
        (the socket monitor's events read first). A handler gets its
        request's routing id from ``requester``."""
        self._read_monitor()
        return self.connections.connected(identity)

    def _heard(self, identity: bytes) -> None:
        """Note a DEALER peer; once per ``peer_ttl_s`` forget the silent ones,
        so clients that come and go (a new routing id each) never pile up."""
        now = time.monotonic()
        self._peers[identity] = now
        if now - self._pruned_at >= self.config.peer_ttl_s:
            cutoff = now - self.config.peer_ttl_s
            self._peers = {peer: heard for peer, heard in self._peers.items() if heard >= cutoff}
            self._pruned_at = now

    def _parse(self, body: list[zmq.Frame]) -> CommandMessage:
        """The request or heartbeat in ``body`` (the frames after the
        envelope). Raises ``ProtocolError`` for anything else."""
        if not body:
            raise ProtocolError("the message has no payload (an empty frame); send one JSON object per frame")
        first = body[0].buffer
        size, limit = len(first), self.config.max_frame_bytes
        if size > limit:
            raise ProtocolError(
                f"frame of {size} bytes exceeds the limit of {limit} bytes (max_frame_bytes); "
                "pass large data through a file or the datastore and send its path",
                scan_transaction_id(first),
            )
        if len(body) > 1:
            raise ProtocolError(
                f"a message is exactly one frame, received {len(body)} payload frames; "
                "send the whole JSON object in a single frame",
                *recover_ids(first),
            )
        message = decode(first)
        if message.message_type in (MessageType.RESPONSE, MessageType.BROADCAST):
            raise ProtocolError(
                f"message_type {message.message_type.value!r} is sent by the host only; "
                "clients send 'request' or 'heartbeat'",
                message.transaction_id,
                message.topic,
            )
        return message

    async def _dispatch(self, envelope: list[bytes], message: CommandMessage) -> None:
        handler = self.routes.lookup(message.topic)
        if handler is None:
            topic = cut_middle(repr(message.topic), 64, inline=True)
            self.lines.warning("unknown_topic", "zmq transport %r: request for unknown topic %s", self.name, topic)
            topics = ", ".join(self.patterns())
            reply = message.fail(
                f"unknown topic {topic}: nothing on host {self.host.name!r} handles it (topics: {topics}); "
                'to run tasks by topic, configure a [[triggers]] table with kind = "zmq"'
            )
            await self._send_response(envelope, message, reply)
        elif len(self._in_flight) >= self.config.max_in_flight:
            self.host.note_refusal(RefusalCause.IN_FLIGHT_LIMIT)
            reply = message.fail(
                f"busy: {len(self._in_flight)} requests are in flight on zmq transport {self.name!r} "
                f"(max_in_flight); retry later",
                status=Status.BUSY,
            )
            self.lines.warning("in_flight_limit", "zmq transport %r: BUSY: %s", self.name, reply.error_message)
            await self._send_response(envelope, message, reply)
        else:
            task = asyncio.create_task(
                self._handle(envelope, message, handler), name=f"zmq-{message.topic}-{message.transaction_id}"
            )
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            self._requests_of.setdefault(envelope[0], {})[task] = message.transaction_id
            task.add_done_callback(lambda t: self._forget_request(envelope[0], t))

    async def _handle(self, envelope: list[bytes], message: CommandMessage, handler: Handler) -> None:
        requester.set(envelope[0])  # this request's task only: handlers read it, e.g. for connected()
        try:
            reply = await handler(message)
            if not isinstance(reply, CommandMessage):
                raise TypeError(f"handler returned {type(reply).__name__}, expected a CommandMessage")
        except asyncio.CancelledError as e:
            if e.args != (GONE,):  # nobody to answer when the client went away
                reply = message.fail("cancelled: the host stopped before the request finished", status=Status.CANCELLED)
                await self._send_response(envelope, message, reply)
            raise
        except Exception as e:
            log.exception("zmq transport %r: handler for topic %r raised", self.name, message.topic)
            error = f"internal error handling {message.topic!r}: {type(e).__name__}: {e}"
            reply = message.fail(error, status=Status.CRASH)
        await self._send_response(envelope, message, reply)

    async def _ping(self, message: CommandMessage) -> CommandMessage:
        return message.reply(
            {
                "name": self.host.name,
                "version": bridgehost.__version__,
                "protocol": PROTOCOL_VERSION,
                "tasks": list(self.host.task_names()),
                "topics": self.patterns(),
            }
        )

    async def _status(self, message: CommandMessage) -> CommandMessage:
        return message.reply(msgspec.to_builtins(self.host.status()))

    def status(self) -> dict[str, Any]:
        """What ``host.status`` shows of this transport: its endpoint, the
        requests in flight, and its DEALER peers heard from within
        ``peer_ttl_s`` (routing id as text when it is printable ASCII, else
        hex; seconds since last heard; the ``MAX_PEERS_SHOWN`` most recent)."""
        now = time.monotonic()
        cutoff = now - self.config.peer_ttl_s
        peers = sorted(((heard, peer) for peer, heard in self._peers.items() if heard >= cutoff), reverse=True)
        return {
            "state": "listening" if self._socket is not None else "stopped",
            "endpoint": self.endpoint,
            "in_flight": len(self._in_flight),
            "connections": self.connections.open,
            "peer_count": len(peers),
            "peers": [{"id": _shown_id(peer), "idle_s": round(now - heard, 3)} for heard, peer in peers[:MAX_PEERS_SHOWN]],
        }

    # -- sending -----------------------------------------------------------

    async def _send_response(self, envelope: list[bytes], request: CommandMessage, reply: CommandMessage) -> None:
        """Send ``reply`` as THE response to ``request``: its id, topic, type
        and a fresh timecode are enforced; an unencodable or oversized reply
        is replaced by an error response, so the client always hears back."""
        reply = msgspec.structs.replace(
            reply,
            transaction_id=request.transaction_id,
            topic=request.topic,
            message_type=MessageType.RESPONSE,
            timecode=now_ms(),
        )
        if not reply.success:
            reply = _bounded(reply)
        try:
            payload = encode(reply)
        except (TypeError, msgspec.EncodeError) as e:
            self.lines.log(
                logging.ERROR, "not_json", "zmq transport %r: response to %r is not JSON: %s", self.name, request.topic, e
            )
            error = f"the result of {request.topic!r} cannot be encoded as JSON: {e}"
            payload = encode(request.fail(error, status=Status.CRASH))
        if len(payload) > self.config.max_frame_bytes:
            message = (
                f"the response to {request.topic!r} is {len(payload)} bytes, over the limit of "
                f"{self.config.max_frame_bytes} bytes (max_frame_bytes); return a file path instead of the data"
            )
            self.lines.log(logging.ERROR, "response_too_large", "zmq transport %r: %s", self.name, message)
            payload = encode(request.fail(message, status=Status.CRASH))
        await self._send(envelope, payload, request.transaction_id, request.topic)

    async def _send(self, envelope: list[bytes], payload: bytes, tid: int, topic: str | None = None) -> bool:
        """Send one message without ever blocking: to libzmq at once, else
        into the peer's outbox (sent as the peer reads), else dropped.
        ``topic``: the message is the response to a request on it, and a
        dropped one is stood in for by a short error response. False if
        it was dropped."""
        sock = self._socket
        if sock is None:
            log.warning("zmq transport %r: stopped; message for transaction id %d dropped", self.name, tid)
            return False
        identity = envelope[0]
        frames = [*envelope, payload]
        if not self.outboxes.waiting(identity):  # else it goes after what waits, in order
            try:
                # DONTWAIT: pyzmq resolves the send at once, so this await never suspends
                await sock.send_multipart(frames, flags=zmq.DONTWAIT)
                return True
            except zmq.Again:
                pass  # libzmq holds LIBZMQ_SNDHWM messages for this peer already
            except zmq.ZMQError as e:
                self._send_failed(identity, e, tid)
                return False
        if self.outboxes.fits(identity, len(payload)):
            self.outboxes.put(identity, frames, len(payload))
            self._kick_flusher()
            return True
        self._drop(envelope, len(payload), tid, topic)
        return False

    def _drop(self, envelope: list[bytes], size: int, tid: int, topic: str | None) -> None:
        identity = envelope[0]
        self.outboxes.dropped += 1
        why = (
            f"peer {identity.hex()[:16]} is not reading: the messages waiting for it are over "
            f"peer_queue_bytes ({self.config.peer_queue_bytes}) or all waiting messages over queue_bytes "
            f"({self.config.queue_bytes})"
        )
        self.lines.warning(
            "not_reading", "zmq transport %r: %s; message for transaction id %d (%d bytes) dropped (%d since start)",
            self.name, why, tid, size, self.outboxes.dropped,
        )
        if topic is None:
            return
        notice = encode(
            error_response(
                tid, topic,
                f"the response ({size} bytes) was dropped: this client had not read the responses before it; "
                "read responses as they arrive",
                status=Status.CRASH,
            )
        )
        if len(notice) < size and self.outboxes.fits(identity, len(notice), headroom=NOTICE_HEADROOM):
            self.outboxes.put(identity, [*envelope, notice], len(notice))
            self._kick_flusher()

    def _send_failed(self, identity: bytes, e: zmq.ZMQError, tid: int) -> None:
        if e.errno == zmq.EHOSTUNREACH:  # the peer disconnected (ROUTER_MANDATORY)
            self._gone([identity])
            self.lines.log(
                logging.INFO,
                "peer_gone",
                "zmq transport %r: peer %s is gone; message for transaction id %d dropped",
                self.name, identity.hex()[:16], tid,
            )
        else:
            log.error("zmq transport %r: send failed: %s; message for transaction id %d dropped", self.name, e, tid)

    def _kick_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_outboxes(), name=f"zmq-{self.name}-outbox")

    async def _flush_outboxes(self) -> None:
        """Hand waiting messages to libzmq as their peers read; back off to
        50 ms while none does."""
        delay = 0.0
        while self.outboxes.size and self._socket is not None:
            delay = 0.0 if await self._flush_once() else min(max(2 * delay, 0.001), 0.05)
            await asyncio.sleep(delay)

    async def _flush_once(self) -> bool:
        """One pass over the outboxes; True if anything was sent."""
        sock, progress = self._socket, False
        if sock is None:
            return False
        for identity in self.outboxes.peers():
            while (frames := self.outboxes.head(identity)) is not None:
                try:
                    await sock.send_multipart(frames, flags=zmq.DONTWAIT)
                except zmq.Again:
                    break
                except zmq.ZMQError as e:
                    self._send_failed(identity, e, 0)
                    break
                self.outboxes.pop(identity)
                progress = True
        return progress

    async def broadcast(self, topic: str, data: Any = None) -> int:
        """Send a ``broadcast`` message to every DEALER peer heard from within
        ``peer_ttl_s`` (REQ peers never get one: their socket would break).

        ``transaction_id`` is this transport's broadcast sequence number
        (1, 2, ... wrapping at 2**32-1, skipping 0), so a listener sees gaps.
        Peers that disconnected are forgotten. Returns how many peers it was
        sent to; 0 when the transport is not running. Raises ``TypeError`` or
        ``msgspec.EncodeError`` if ``data`` is not JSON-encodable.
        """
        if self._socket is None:
            return 0
        self._broadcast_seq = self._broadcast_seq % (2**32 - 1) + 1
        payload = encode(
            CommandMessage(
                transaction_id=self._broadcast_seq,
                timecode=now_ms(),
                topic=topic,
                message_type=MessageType.BROADCAST,
                data={} if data is None else data,
            )
        )
        cutoff = time.monotonic() - self.config.peer_ttl_s
        sent = 0
        for identity, heard in list(self._peers.items()):
            if heard < cutoff:
                del self._peers[identity]
            elif await self._send([identity], payload, self._broadcast_seq):
                sent += 1
        return sent


def _monitor(ctx: zmq.asyncio.Context, sock: zmq.asyncio.Socket, events: int) -> zmq.Socket:
    """A plain (not asyncio) PAIR socket receiving ``sock``'s monitor
    events, read without blocking; connected before ``bind`` so no event is missed."""
    address = f"inproc://bridgehost-monitor-{id(sock):x}"
    sock.monitor(address, events)
    monitor: zmq.Socket[bytes] = zmq.Context.shadow(ctx.underlying).socket(zmq.PAIR)
    monitor.connect(address)
    return monitor


def _shown_id(identity: bytes) -> str:
    text = identity.decode("ascii", errors="replace")
    return text if identity.isascii() and text.isprintable() else identity.hex()


def _bounded(reply: CommandMessage) -> CommandMessage:
    """A failed response whose message and string details are cut to
    ``MAX_ERROR_CHARS``: a script that raises a 10 MB message still gets a
    readable answer that fits in a frame."""
    data = reply.data
    if isinstance(data, dict):
        data = {k: cut_middle(v, MAX_ERROR_CHARS) if isinstance(v, str) else v for k, v in data.items()}
    return msgspec.structs.replace(reply, error_message=cut_middle(reply.error_message, MAX_ERROR_CHARS), data=data)
