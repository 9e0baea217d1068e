"""What bridgehost-steps shows an observer (the core's ``register_metrics``
hook; docs/observability.md): its jobs by task and state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost_steps.machine import FINAL, State

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.metrics import Metrics

QUEUED = "queued"
"""The state label of a job started with ``steps.start`` that waits in its task's queue."""
OPEN_STATES = [QUEUED, *(s.value for s in State if s not in FINAL)]


def declare(metrics: Metrics, host: Host) -> None:
    from bridgehost_steps.controller import StepsController

    tasks = [name for name, lane in host.lanes.items() if lane.config.kind in ("step", "sequence")]

    def collect() -> list[tuple[tuple[str, str], int]]:
        if not tasks:
            return []
        controller = StepsController.of(host)
        counts = dict.fromkeys(((task, state) for task in tasks for state in OPEN_STATES), 0)
        for task in controller.queued.values():
            if (task, QUEUED) in counts:
                counts[(task, QUEUED)] += 1
        for run in controller.runs.values():
            if (run.task, run.state.value) in counts:
                counts[(run.task, run.state.value)] += 1
        return list(counts.items())

    metrics.gauge(
        "bridgehost_steps_jobs",
        "Steps jobs open now, by task and state (queued, running, pausing, paused, faulted, halting).",
        labels=("task", "state"),
        collect=collect,
    )
