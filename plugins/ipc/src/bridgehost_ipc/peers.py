"""The ROUTER's peers: which are still connected, and what waits to be sent to each.

- ``Connections`` tells which routing ids went away. libzmq's ROUTER peer
  notifications (``ZMQ_ROUTER_NOTIFY``) are a draft API that the libzmq
  wheels of pyzmq do not build, so this uses what stable libzmq has: a
  socket monitor (zmq_socket_monitor(3): ``ACCEPTED`` and ``DISCONNECTED``
  events carry the connection's file descriptor) and the descriptor each
  message came in on (zmq_msg_get(3), ``ZMQ_SRCFD``). Each accepted
  descriptor is a new connection; a routing id belongs to the connection it
  last sent on, so a descriptor number reused by a later connection never
  takes an earlier peer with it.
- ``Listener`` recognises, by its file descriptor, a connection that
  libzmq accepted on the transport's endpoint, and closes one: libzmq has
  no limit on the connections a socket accepts, so the transport enforces
  its own (``max_connections``) with it.
- ``Outboxes`` holds the messages for peers whose libzmq queue is full (a
  client that does not read), bounded in bytes per peer and in total: the
  host never buffers more than that for clients that do not read.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import zmq

MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class Connections:
    """Routing id -> the connection it last sent on; which ids a
    disconnect takes with it. Feed it ``event()`` (monitor events, in
    order) and ``heard()`` (each message's routing id and ``ZMQ_SRCFD``)."""

    def __init__(self) -> None:
        self._serial = 0
        self._by_fd: dict[int, int] = {}  # open descriptor -> connection serial
        self._ids: dict[int, set[bytes]] = {}  # connection serial -> routing ids heard on it
        self._conn_of: dict[bytes, int] = {}  # routing id -> connection serial
        self._closing: set[int] = set()  # descriptors shut down by the transport, not yet reported closed

    def event(self, event: int, fd: int) -> list[bytes]:
        """Apply a monitor event; the routing ids that are gone (for ``DISCONNECTED``)."""
        if event == zmq.EVENT_ACCEPTED:
            self._serial += 1
            self._by_fd[fd] = self._serial
            self._closing.discard(fd)
            return []
        if event == zmq.EVENT_DISCONNECTED:
            self._closing.discard(fd)
            conn = self._by_fd.pop(fd, None)
            gone = self._ids.pop(conn, set()) if conn is not None else set()
            for identity in gone:
                self._conn_of.pop(identity, None)
            return sorted(gone)
        return []

    def heard(self, identity: bytes, fd: int) -> None:
        """``identity`` sent a message on descriptor ``fd`` (-1 if unknown)."""
        conn = self._by_fd.get(fd)
        if conn is None:  # no ACCEPTED seen (inproc, or a descriptor libzmq did not report): untracked
            return
        old = self._conn_of.get(identity)
        if old == conn:
            return
        if old is not None:  # ZMQ_ROUTER_HANDOVER: the id moved to a new connection
            self._ids.get(old, set()).discard(identity)
        self._conn_of[identity] = conn
        self._ids.setdefault(conn, set()).add(identity)

    def connected(self, identity: bytes) -> bool:
        """Whether ``identity``'s connection is still open, as far as known."""
        return identity in self._conn_of

    @property
    def open(self) -> int:
        """Connections accepted and not yet seen closed, less those being closed."""
        return len(self._by_fd) - len(self._closing)

    def closing(self, fd: int) -> None:
        """The transport shut ``fd``'s connection down: libzmq closes the
        descriptor in its own time; until then it is not counted in ``open``."""
        if fd in self._by_fd:
            self._closing.add(fd)

    def descriptors(self) -> list[int]:
        """The descriptors of the connections counted in ``open``."""
        return list(self._by_fd)

    def eviction_order(self) -> list[int]:
        """The open connections' descriptors in the order a bound on
        connections closes them: those no message came in on yet (a client
        that connects and says nothing, or never completes its handshake),
        oldest first; then the others, newest first."""
        by_age = sorted((item for item in self._by_fd.items() if item[0] not in self._closing), key=lambda item: item[1])
        silent = [fd for fd, conn in by_age if conn not in self._ids]
        heard = [fd for fd, conn in reversed(by_age) if conn in self._ids]
        return silent + heard

    def __len__(self) -> int:
        return len(self._conn_of)


class Listener:
    """The connections libzmq accepted on one ``tcp://`` or ``ipc://`` endpoint.

    ``endpoint`` is the bound address (``ZMQ_LAST_ENDPOINT``, a ``*`` port
    resolved). A descriptor belongs to the endpoint when it is a stream
    socket whose local address is the endpoint's (the TCP port, or the
    ``ipc://`` path, ``@`` standing for an abstract name; see unix(7)):
    a descriptor number that libzmq closed and the process reused for a
    file, a pipe or an outgoing socket is never taken for a connection.
    """

    def __init__(self, endpoint: str):
        scheme, _, address = endpoint.partition("://")
        self.port: int | None = None
        self.path: str | bytes | None = None
        if scheme == "tcp":
            self.port = int(address.rsplit(":", 1)[1])
        elif scheme == "ipc":
            self.path = b"\0" + address[1:].encode() if address.startswith("@") else address

    def _wrap(self, fd: int) -> socket.socket | None:
        """``fd`` as a socket object that does not own it (``detach`` it after use), if it is one of ours."""
        if self.port is None and self.path is None:
            return None
        try:
            sock = socket.socket(fileno=fd)
        except OSError:  # closed, or not a socket
            return None
        try:
            if sock.type != socket.SOCK_STREAM:
                raise OSError
            local = sock.getsockname()
            if self.port is not None:
                ours = sock.family in (socket.AF_INET, socket.AF_INET6) and local[1] == self.port
            else:
                ours = sock.family == socket.AF_UNIX and local == self.path
        except OSError:
            ours = False
        if not ours:
            sock.detach()
            return None
        return sock

    def owns(self, fd: int) -> bool:
        """Whether ``fd`` is now a connection accepted on this endpoint."""
        sock = self._wrap(fd)
        if sock is None:
            return False
        sock.detach()
        return True

    def close(self, fd: int) -> str | None:
        """Shut down the connection on ``fd`` (shutdown(2), both ways) if it
        is one of this endpoint's; the peer's address as text, else ``None``.
        The descriptor stays libzmq's: it sees the connection end, closes
        it, and reports it ``DISCONNECTED``."""
        sock = self._wrap(fd)
        if sock is None:
            return None
        try:
            try:
                peer = sock.getpeername()
            except OSError:
                peer = None
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return None
        finally:
            sock.detach()
        if isinstance(peer, tuple):
            return f"{peer[0]}:{peer[1]}"
        return "a local process"


@dataclass
class _Queue:
    messages: collections.deque[tuple[list[bytes], int]] = field(default_factory=collections.deque)
    size: int = 0


class Outboxes:
    """Messages waiting for peers whose libzmq queue is full, in order.

    A peer's queue takes a message while it holds fewer than
    ``peer_bytes`` bytes (and always when empty, so any one message up to
    the frame limit can go), and while all queues together hold fewer than
    ``total_bytes``. ``dropped`` counts what did not fit.
    """

    def __init__(self, peer_bytes: int, total_bytes: int):
        self.peer_bytes = peer_bytes
        self.total_bytes = total_bytes
        self.size = 0
        """Bytes queued, all peers."""
        self.dropped = 0
        """Messages that did not fit, since start."""
        self._queues: dict[bytes, _Queue] = {}

    def fits(self, identity: bytes, size: int, *, headroom: int = 0) -> bool:
        """Whether a message of ``size`` bytes may be queued for ``identity``
        (``headroom``: bytes allowed past both bounds, for short notices)."""
        queue = self._queues.get(identity)
        held = queue.size if queue is not None else 0
        if held and held + size > self.peer_bytes + headroom:
            return False
        return self.size + size <= self.total_bytes + headroom or not self.size

    def put(self, identity: bytes, frames: list[bytes], size: int) -> None:
        """Queue ``frames`` (``size`` bytes) for ``identity``; check ``fits`` first."""
        queue = self._queues.setdefault(identity, _Queue())
        queue.messages.append((frames, size))
        queue.size += size
        self.size += size

    def waiting(self, identity: bytes) -> bool:
        """Whether ``identity`` has messages queued (a new one goes after them)."""
        return identity in self._queues

    def peers(self) -> list[bytes]:
        return list(self._queues)

    def head(self, identity: bytes) -> list[bytes] | None:
        queue = self._queues.get(identity)
        return queue.messages[0][0] if queue is not None else None

    def pop(self, identity: bytes) -> None:
        """Remove the head of ``identity``'s queue (it was sent)."""
        queue = self._queues[identity]
        _, size = queue.messages.popleft()
        queue.size -= size
        self.size -= size
        if not queue.messages:
            del self._queues[identity]

    def discard(self, identities: Iterable[bytes]) -> int:
        """Forget the queues of peers that are gone; how many messages that was."""
        count = 0
        for identity in identities:
            queue = self._queues.pop(identity, None)
            if queue is not None:
                count += len(queue.messages)
                self.size -= queue.size
        return count

    def clear(self) -> None:
        self._queues.clear()
        self.size = 0
