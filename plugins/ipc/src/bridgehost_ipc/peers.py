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
- ``Outboxes`` holds the messages for peers whose libzmq queue is full (a
  client that does not read), bounded in bytes per peer and in total: the
  host never buffers more than that for clients that do not read.
"""

from __future__ import annotations

import collections
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

    def event(self, event: int, fd: int) -> list[bytes]:
        """Apply a monitor event; the routing ids that are gone (for ``DISCONNECTED``)."""
        if event == zmq.EVENT_ACCEPTED:
            self._serial += 1
            self._by_fd[fd] = self._serial
            return []
        if event == zmq.EVENT_DISCONNECTED:
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

    def __len__(self) -> int:
        return len(self._conn_of)


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
