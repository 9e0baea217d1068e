"""The ``prometheus`` transport: ``/metrics`` over HTTP, in the Prometheus
text exposition format (https://prometheus.io/docs/instrumenting/exposition_formats/).

It serves, from a ``prometheus_client.CollectorRegistry`` of its own (never
the process-wide default, so two hosts in one process keep apart):

- every metric declared through the core's ``register_metrics`` hook (the
  host's own: jobs by task and status, running and queued per task,
  refusals by cause, uptime, build info; and the plugins'), read on the
  host's event loop at each scrape;
- ``bridgehost_job_duration_seconds``, a histogram per configured task, and
  ``bridgehost_job_events_total``, both fed by the lifecycle hooks
  (``job_finished``, ``job_event``);
- prometheus_client's ``process_*`` metrics of the host process (memory,
  CPU, open files).

The HTTP server (``bridgehost_prometheus.server``) serves prometheus_client's
WSGI app: a thread per scrape, at most ``max_connections`` at once, which
builds the whole page before it writes it with a ``Content-Length``, so a
scrape while the host stops gets the full page, an error status or a closed
connection, never half a page. Every metric:
``docs/observability.md``.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import ipaddress
import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bridgehost import hookimpl
from bridgehost.config import TransportConfig
from bridgehost.errors import BridgehostError, InvalidField
from bridgehost.jobs import EventKind
from bridgehost.metrics import Metrics, MetricSeries, MetricType, declared_metrics
from bridgehost_prometheus.server import MetricsServer

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.jobs import Job, JobEvent, Outcome

log = logging.getLogger("bridgehost.prometheus")

DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds of the job duration histogram, seconds: a named analysis
takes milliseconds, a script seconds, a step minutes."""
READ_TIMEOUT_S = 5.0
"""How long a scrape waits for the host's loop to read the metrics; a loop
stalled longer answers the scrape with HTTP 500 (and Prometheus marks the
target down), instead of holding the scraper."""


class PrometheusTransportConfig(TransportConfig, kw_only=True):
    """``[[transports]] kind = "prometheus"``: the HTTP endpoint Prometheus scrapes."""

    listen: str = "127.0.0.1:9464"
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) the HTTP server binds; any
    path answers with the metrics, ``/metrics`` by convention. Loopback by
    default: another address logs a WARNING, since anyone who reaches it
    reads the host's task names and load. Port 0 picks a free one."""
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    """Connections answered at once (each in a thread of its own); one more
    is closed at once, logged. A connection whose client stalls a read or a
    write for ``IO_TIMEOUT_S`` is closed."""
    duration_buckets_s: Annotated[list[Annotated[float, msgspec.Meta(gt=0)]], msgspec.Meta(min_length=1)] = (
        msgspec.field(default_factory=lambda: list(DEFAULT_BUCKETS_S))
    )
    """Upper bounds (seconds, increasing) of ``bridgehost_job_duration_seconds``."""


class PrometheusError(BridgehostError):
    """The endpoint cannot be served (its address is in use or not this machine's)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` -> ``("127.0.0.1", 9464)``; ``"[::1]:9464"`` ->
    ``("::1", 9464)``. Raises ``InvalidField("listen", ...)``."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidField(
            "listen", f"{listen!r} is not HOST:PORT with a port of 0-65535", "e.g. 127.0.0.1:9464 or [::1]:9464"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) names this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PrometheusTransport:
    """Serves ``/metrics`` while the host runs. ``url`` is the address to
    scrape once started (a port of 0 resolved)."""

    def __init__(self, config: PrometheusTransportConfig, host: Host):
        self.config = config
        self.host = host
        self.name = config.name or config.kind
        self.address = parse_listen(config.listen)
        buckets = config.duration_buckets_s
        if any(b >= a for b, a in itertools.pairwise(buckets)):
            raise InvalidField("duration_buckets_s", f"{buckets} is not increasing", "list the bounds from small to large")
        self.url = ""
        self._server: MetricsServer | None = None
        self._observer: _JobObserver | None = None

    def check(self) -> list[str]:
        """What ``bridgehost check`` prints and the host logs at start: an
        address not on loopback."""
        if is_loopback(self.address[0]):
            return []
        return [
            (
                f"listen = {self.config.listen!r} is not a loopback address: anyone who reaches it reads the metrics; "
                "keep 127.0.0.1 and let Prometheus reach it through a tunnel or a proxy with access control"
            )
        ]

    async def start(self) -> None:
        """Read what plugins declare, then bind and serve. Raises
        ``PrometheusError`` naming the address if it cannot be bound."""
        observer = _JobObserver(self.host.task_names(), self.config.duration_buckets_s)
        metrics = declared_metrics(self.host)
        observer.declare(metrics)
        registry = prometheus_client.CollectorRegistry(auto_describe=False)
        registry.register(_HostCollector(metrics, observer, asyncio.get_running_loop()))
        prometheus_client.ProcessCollector(registry=registry)
        addr, port = self.address
        try:
            server = MetricsServer.serve(addr, port, registry, self.config.max_connections)
        except OSError as e:
            reason = e.strerror or str(e)
            raise PrometheusError(
                f"cannot listen on {self.config.listen} for /metrics: {reason}; "
                f"another process may be using port {port}: stop it or set another listen address"
            ) from e
        self._server, self._observer = server, observer
        bound_host, bound_port = server.server_address[:2]
        if isinstance(bound_host, bytes):  # typeshed allows it; an AF_INET(6) server's is a str
            bound_host = bound_host.decode()
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/metrics"
        # The job hooks have no host argument: an object registered with this
        # host's plugin manager while serving sees exactly this host's jobs.
        self.host.plugins.pm.register(observer, name=f"prometheus-observer-{id(self)}")
        log.info("prometheus transport %r: serving %s", self.name, self.url)

    async def stop(self) -> None:
        """Stop serving: a scrape being answered finishes with its full page."""
        if self._observer is not None:
            self.host.plugins.pm.unregister(self._observer)
            self._observer = None
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)  # waits for serve_forever's poll (0.5 s) to notice
            server.server_close()
            log.info("prometheus transport %r stopped", self.name)

    def status(self) -> dict[str, Any]:
        """For ``host.status``: where it serves."""
        return {"state": "serving" if self._server is not None else "stopped", "url": self.url}


class _HostCollector(Collector):
    """The declared metrics and the job histogram, read on the host's loop
    (where their state lives) from the scrape's thread, all at one instant."""

    def __init__(self, metrics: Metrics, observer: _JobObserver, loop: asyncio.AbstractEventLoop):
        self.metrics = metrics
        self.observer = observer
        self.loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        async def read() -> tuple[list[MetricSeries], HistogramMetricFamily]:
            return self.metrics.read(), self.observer.durations()

        series, durations = asyncio.run_coroutine_threadsafe(read(), self.loop).result(READ_TIMEOUT_S)
        for one in series:
            metric = one.metric
            family_type = CounterMetricFamily if metric.type is MetricType.COUNTER else GaugeMetricFamily
            family = family_type(metric.name, metric.help, labels=metric.labels)
            for labels, value in one.samples.items():
                family.add_metric(labels, value)
            yield family
        yield durations


class _JobObserver:
    """Lifecycle hookimpls feeding what needs every job, not a reading: the
    duration histogram and the event counts. Only configured task names are
    labels. Its state is touched on the host's loop only."""

    def __init__(self, tasks: list[str], buckets: list[float]):
        self.bounds = list(buckets)
        # Per task: the count of durations in each bucket (the last one +Inf), and their sum.
        self._counts = {task: [0] * (len(buckets) + 1) for task in tasks}
        self._sums = dict.fromkeys(tasks, 0.0)
        self.events: collections.Counter[tuple[str, str]] = collections.Counter()

    def declare(self, metrics: Metrics) -> None:
        tasks = list(self._counts)
        metrics.counter(
            "bridgehost_job_events_total",
            "Events running jobs reported (progress, location, duration, diagnostic), by task and kind.",
            labels=("task", "kind"),
            collect=lambda: [((t, k.value), self.events[(t, k.value)]) for t in tasks for k in EventKind],
        )

    def durations(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "bridgehost_job_duration_seconds",
            "Seconds from a job's start to its end, by task (jobs that ran, whatever their status).",
            labels=("task",),
        )
        for task, counts in self._counts.items():
            cumulative = list(itertools.accumulate(counts))
            bounds = [*map(floatToGoString, self.bounds), "+Inf"]
            family.add_metric((task,), list(zip(bounds, cumulative, strict=True)), self._sums[task])
        return family

    @hookimpl
    def job_finished(self, job: Job, outcome: Outcome) -> None:
        counts = self._counts.get(outcome.task)
        if counts is not None and job.started_at is not None:
            counts[bisect.bisect_left(self.bounds, outcome.duration_s)] += 1
            self._sums[outcome.task] += outcome.duration_s

    @hookimpl
    def job_event(self, job: Job, event: JobEvent) -> None:
        if job.task in self._counts:
            self.events[(job.task, str(event.kind))] += 1
