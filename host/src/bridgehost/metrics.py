"""The metrics API: how a plugin tells an observer (a Prometheus
endpoint) what it can measure, without importing it.

A plugin implements the ``register_metrics`` hook and declares each metric
with a callback that reads its current values::

    @hookimpl
    def register_metrics(metrics, host):
        pool = host.plugin_state(PoolState)
        metrics.gauge(
            "acme_pool_idle_workers",
            "Workers waiting for a job.",
            labels=("task",),
            collect=lambda: [((name, ), len(p.idle)) for name, p in pool.items()],
        )

``collect()`` returns (or yields) ``(label_values, value)`` pairs, one per
series, ``label_values`` a tuple in the order of ``labels`` (``()`` for a
metric without labels). It is called on the host's event loop each time an
observer reads the metrics (a scrape, every 15 s or so), so it reads the
plugin's state directly and safely; it must not block or await. A callback
that raises is logged and its metric left out of that reading.

Names and types follow Prometheus' conventions
(https://prometheus.io/docs/practices/naming/): base units (``_seconds``,
``_bytes``), a counter's name ends in ``_total``, and a label's values are
few and known in advance (task names from the config, a fixed set of
causes), never ids or text from a request. A name declared by several
plugins is one metric: its type and labels must agree, and values with equal
labels are added (two sources of refusals count into one
``bridgehost_requests_refused_total``).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from bridgehost.host import Host

log = logging.getLogger(__name__)

LabelValues = tuple[str, ...]
Sample = tuple[LabelValues, float]
Collect = Callable[[], Iterable[Sample]]

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricType(enum.StrEnum):
    """What a value means over time (Prometheus' metric types)."""

    GAUGE = "gauge"
    """A value that goes up and down (jobs queued now)."""
    COUNTER = "counter"
    """A count that only grows while the host runs (zygote restarts); its
    name ends in ``_total``."""


class Metric(msgspec.Struct, frozen=True):
    """One declared metric: ``name``, ``help`` (one line), ``type``, the
    ``labels`` every series carries, and the callback that reads its values."""

    name: str
    help: str
    type: MetricType
    labels: tuple[str, ...]
    collect: Collect
    plugin: str = ""


class MetricSeries(msgspec.Struct, frozen=True):
    """One metric read at one instant: its declaration and its values, with
    the values of every plugin that declared the same name added up."""

    metric: Metric
    samples: dict[LabelValues, float]


class Metrics:
    """What ``register_metrics`` hookimpls declare into; ``read()`` reads them all.

    Raises ``ValueError`` at declaration for a name or label Prometheus would
    refuse, a counter not ending in ``_total``, or a name declared again with
    another type or other labels.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, list[Metric]] = {}
        self.plugin = ""
        """The plugin declaring now (set by ``declared_metrics``), for log lines."""

    def gauge(self, name: str, help: str, *, labels: Iterable[str] = (), collect: Collect) -> None:
        """Declare a gauge: ``collect()`` gives its current values."""
        self._add(Metric(name, help, MetricType.GAUGE, tuple(labels), collect, self.plugin))

    def counter(self, name: str, help: str, *, labels: Iterable[str] = (), collect: Collect) -> None:
        """Declare a counter: ``collect()`` gives its counts since the host started."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: a counter's name ends in '_total'")
        self._add(Metric(name, help, MetricType.COUNTER, tuple(labels), collect, self.plugin))

    def _add(self, metric: Metric) -> None:
        if not _NAME.match(metric.name):
            raise ValueError(f"metric name {metric.name!r} is not [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in metric.labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"metric {metric.name!r}: label {label!r} is not [a-zA-Z_][a-zA-Z0-9_]* (nor __*)")
        same = self._metrics.setdefault(metric.name, [])
        if same and (same[0].type, same[0].labels) != (metric.type, metric.labels):
            first = same[0]
            raise ValueError(
                f"metric {metric.name!r} is declared as a {metric.type} with labels {metric.labels} "
                f"but plugin {first.plugin!r} declared it a {first.type} with labels {first.labels}"
            )
        same.append(metric)

    def __iter__(self) -> Iterator[Metric]:
        """Each name's first declaration, in declaration order."""
        return (same[0] for same in self._metrics.values())

    def __len__(self) -> int:
        return len(self._metrics)

    def read(self) -> list[MetricSeries]:
        """Every metric's current values; call on the host's loop. A callback
        that raises, or gives a sample of the wrong shape, is logged and its
        values are left out."""
        out = []
        for same in self._metrics.values():
            samples: dict[LabelValues, float] = {}
            for metric in same:
                try:
                    for labels, value in metric.collect():
                        labels = tuple(map(str, labels))
                        if len(labels) != len(metric.labels):
                            raise ValueError(f"sample labels {labels} do not match {metric.labels}")
                        samples[labels] = samples.get(labels, 0.0) + float(value)
                except Exception:
                    log.exception("metric %r of plugin %r: collect() failed", metric.name, metric.plugin)
            out.append(MetricSeries(same[0], samples))
        return out


def declared_metrics(host: Host) -> Metrics:
    """Call every plugin's ``register_metrics(metrics, host)`` and return
    what they declared. A hookimpl that raises is logged and what it had
    declared before stays."""
    metrics = Metrics()
    for impl in reversed(host.plugins.hook.register_metrics.get_hookimpls()):
        metrics.plugin = impl.plugin_name
        kwargs = {"metrics": metrics, "host": host}
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception:
            log.exception("plugin %r raised in register_metrics", impl.plugin_name)
    metrics.plugin = ""
    return metrics


def core_metrics(metrics: Metrics, host: Host) -> None:
    """The host's own metrics (``register_metrics`` of the built-in plugin),
    read from ``host.status()``'s sources: the lanes and the refusal counts.
    The ``task`` label takes only configured task names; a request for any
    other name counts only in ``bridgehost_requests_refused_total``."""
    import bridgehost
    from bridgehost.jobs import Status
    from bridgehost.status import RefusalCause

    lanes = host.lanes
    metrics.gauge(
        "bridgehost_build_info",
        "Always 1: the host's name and the bridgehost version.",
        labels=("name", "version"),
        collect=lambda: [((host.name, bridgehost.__version__), 1)],
    )
    metrics.gauge(
        "bridgehost_uptime_seconds",
        "Seconds since the host began accepting requests.",
        collect=lambda: [((), host.uptime_s())],
    )
    metrics.counter(
        "bridgehost_jobs_total",
        "Jobs ended since the host started, by task and status (BUSY and REJECTED refusals included).",
        labels=("task", "status"),
        collect=lambda: [((name, s.name), lane.finished[s]) for name, lane in lanes.items() for s in Status],
    )
    metrics.gauge(
        "bridgehost_jobs_running",
        "Jobs running now, by task.",
        labels=("task",),
        collect=lambda: [((name,), len(lane.running)) for name, lane in lanes.items()],
    )
    metrics.gauge(
        "bridgehost_jobs_queued",
        "Jobs waiting in the task's queue now, by task.",
        labels=("task",),
        collect=lambda: [((name,), len(lane.waiting)) for name, lane in lanes.items()],
    )
    metrics.gauge(
        "bridgehost_task_concurrency",
        "Jobs a task may run at once (its concurrency setting).",
        labels=("task",),
        collect=lambda: [((name,), lane.config.concurrency) for name, lane in lanes.items()],
    )
    metrics.gauge(
        "bridgehost_task_queue_size",
        "Jobs a task's queue may hold (its queue_size setting); a request beyond it is refused BUSY.",
        labels=("task",),
        collect=lambda: [((name,), lane.config.queue_size) for name, lane in lanes.items()],
    )
    metrics.counter(
        "bridgehost_requests_refused_total",
        "Requests answered without running, by cause: queue_full, in_flight_limit, stopping, unknown_task.",
        labels=("cause",),
        collect=lambda: [((cause.value,), host.refused[cause]) for cause in RefusalCause],
    )
