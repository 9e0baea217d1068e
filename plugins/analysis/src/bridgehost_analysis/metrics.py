"""What bridgehost-analysis shows an observer (the core's
``register_metrics`` hook; docs/observability.md): per ``analysis`` task,
its zygote's restarts and waiting children, the runs killed by cause, and
the largest peak memory of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost_analysis.runner import ZygoteRunner
from bridgehost_analysis.task import KILL_CAUSES, AnalysisTask

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.metrics import Metrics


def declare(metrics: Metrics, host: Host) -> None:
    tasks = {name: lane.impl for name, lane in host.lanes.items() if isinstance(lane.impl, AnalysisTask)}
    zygotes = {name: task.runner for name, task in tasks.items() if isinstance(task.runner, ZygoteRunner)}
    metrics.counter(
        "bridgehost_analysis_zygote_restarts_total",
        "Zygotes started again after the previous one died, by task.",
        labels=("task",),
        collect=lambda: [((name,), runner.restarts) for name, runner in zygotes.items()],
    )
    metrics.gauge(
        "bridgehost_analysis_waiting_children",
        "Children forked ahead, waiting for a run, by task.",
        labels=("task",),
        collect=lambda: [
            ((name,), len(runner.zygote.ready) if runner.zygote is not None else 0) for name, runner in zygotes.items()
        ],
    )
    metrics.counter(
        "bridgehost_analysis_runs_killed_total",
        "Runs killed, by task and cause (cancelled, killed, too_many_processes, too_much_output, reply_too_large, zygote_lost, signal).",
        labels=("task", "cause"),
        collect=lambda: [((name, cause), task.killed[cause]) for name, task in tasks.items() for cause in KILL_CAUSES],
    )
    metrics.gauge(
        "bridgehost_analysis_child_max_rss_bytes",
        "The largest peak resident memory of a run since the host started, by task (zygote runner).",
        labels=("task",),
        collect=lambda: [
            ((name,), 1024 * runner.zygote.max_rss_kb if runner.zygote is not None else 0)
            for name, runner in zygotes.items()
        ],
    )
