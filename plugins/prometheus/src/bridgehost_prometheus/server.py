"""The HTTP server of ``/metrics``: prometheus_client's WSGI app, bounded.

``prometheus_client.start_http_server`` answers each connection in a thread
of its own, with no limit on how many and no timeout on the socket: a client
that opens connections and sends nothing holds a thread and a file
descriptor in the host for each, for ever. This server serves the same app
(``prometheus_client.make_wsgi_app``) on the standard library's ``wsgiref``
(PEP 3333), with two bounds:

- at most ``max_connections`` connections are answered at once; one more is
  closed as soon as it is accepted, counted in ``refused`` and logged
  (rate-limited);
- every read and write of a connection must progress within
  ``IO_TIMEOUT_S`` (``socket.settimeout``), or the connection is closed.

Prometheus scrapes a target with one request at a time, and times a scrape
out after ``scrape_timeout`` (10 s by default:
https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import prometheus_client

from bridgehost.logs import RateLimitedLog

log = logging.getLogger("bridgehost.prometheus")

IO_TIMEOUT_S = 10.0
"""Seconds a read or a write of a scrape's connection may wait for the
client; then the connection is closed (Prometheus' own default scrape timeout)."""


class _Handler(WSGIRequestHandler):
    timeout = IO_TIMEOUT_S  # StreamRequestHandler.setup() applies it to the connection

    def log_message(self, format: str, *args: Any) -> None:
        """One line per scrape on stderr (wsgiref's default) is noise; say nothing."""


class MetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``max_connections`` at once.

    ``MetricsServer.serve(addr, port, registry, max_connections)`` binds
    (IPv4 or IPv6, as ``addr`` resolves) and serves from a daemon thread;
    ``shutdown()`` then ``server_close()`` stop it. Raises ``OSError`` if
    the address cannot be bound.
    """

    daemon_threads = True
    request_queue_size = 64  # listen(2) backlog: socketserver's 5 drops bursts of connections

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, max_connections: int):
        self.address_family = family
        self.max_connections = max_connections
        self.refused = 0
        """Connections closed at once because ``max_connections`` were being answered."""
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lines = RateLimitedLog(log)  # used by the accepting thread only
        super().__init__(address, _Handler)

    @classmethod
    def serve(
        cls, addr: str, port: int, registry: prometheus_client.CollectorRegistry, max_connections: int
    ) -> MetricsServer:
        family, _, _, _, sockaddr = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        server = cls((str(sockaddr[0]), int(sockaddr[1])), family, max_connections)
        server.set_app(prometheus_client.make_wsgi_app(registry))
        threading.Thread(target=server.serve_forever, name="bridgehost-metrics", daemon=True).start()
        return server

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self._lines.warning(
                "max_connections",
                "prometheus transport: connection from %s closed: %d connections were being answered, the most "
                "max_connections allows (%d closed since start)",
                client_address[0], self.max_connections, self.refused,
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away: socketserver would print a
        traceback on stderr for each; one DEBUG line is enough."""
        # socketserver calls it inside its except clause
        log.debug("prometheus transport: connection from %s ended: %r", client_address[0], sys.exc_info()[1])
