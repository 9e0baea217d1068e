"""What bridgehost-ipc shows an observer (the core's ``register_metrics``
hook; docs/observability.md): per ``zmq`` transport, its peers, the
requests in flight, its connections and those refused, the responses
dropped and the bytes waiting in its outboxes. (Its ``max_in_flight``
refusals count in the core's ``bridgehost_requests_refused_total``.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost_ipc.transport import ZmqTransport

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.metrics import Metrics


def declare(metrics: Metrics, host: Host) -> None:
    transports = {name: t for name, t in host.transports.items() if isinstance(t, ZmqTransport)}

    metrics.gauge(
        "bridgehost_ipc_peers",
        "DEALER clients heard from within peer_ttl_s (they get broadcasts), by transport.",
        labels=("transport",),
        collect=lambda: [((name,), t.status()["peer_count"]) for name, t in transports.items()],
    )
    metrics.gauge(
        "bridgehost_ipc_requests_in_flight",
        "Requests being handled now (at most max_in_flight), by transport.",
        labels=("transport",),
        collect=lambda: [((name,), t.status()["in_flight"]) for name, t in transports.items()],
    )
    metrics.gauge(
        "bridgehost_ipc_connections",
        "Connections open now (at most max_connections), by transport.",
        labels=("transport",),
        collect=lambda: [((name,), t.connections.open) for name, t in transports.items()],
    )
    metrics.counter(
        "bridgehost_ipc_connections_refused_total",
        "Connections closed as soon as accepted because max_connections were open, by transport.",
        labels=("transport",),
        collect=lambda: [((name,), t.connections_refused) for name, t in transports.items()],
    )
    metrics.counter(
        "bridgehost_ipc_responses_dropped_total",
        "Messages dropped because a client's outbox was full (it does not read), by transport.",
        labels=("transport",),
        collect=lambda: [((name,), t.outboxes.dropped) for name, t in transports.items()],
    )
    metrics.gauge(
        "bridgehost_ipc_queued_bytes",
        "Bytes of messages waiting in the transport's outboxes for clients that read slowly, by transport.",
        labels=("transport",),
        collect=lambda: [((name,), t.outboxes.size) for name, t in transports.items()],
    )
