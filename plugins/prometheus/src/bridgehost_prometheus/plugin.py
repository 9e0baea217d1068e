"""bridgehost plugin ``prometheus``: the ``prometheus`` transport kind."""

from __future__ import annotations

from bridgehost import hookimpl
from bridgehost.registry import Registry
from bridgehost_prometheus.transport import PrometheusTransport, PrometheusTransportConfig


@hookimpl
def register_transports(registry: Registry) -> None:
    registry.add(
        "prometheus",
        PrometheusTransport,
        config=PrometheusTransportConfig,
        summary="HTTP /metrics for Prometheus: jobs, durations, queues, refusals and every plugin's metrics",
    )
