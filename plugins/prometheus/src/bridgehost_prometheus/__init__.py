"""bridgehost-prometheus: the ``prometheus`` transport kind, a ``/metrics``
endpoint for Prometheus (``bridgehost_prometheus.transport``).

No other plugin imports this package: they declare their metrics through
the core's ``register_metrics`` hook (``bridgehost.metrics``).
"""
