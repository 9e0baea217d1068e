"""The bridgehost plugin ``steps``: the ``step`` and ``sequence`` task kinds,
and the built-in steps (``delay``)."""

from __future__ import annotations

from bridgehost import hookimpl
from bridgehost_steps import hookspecs


@hookimpl
def add_hookspecs(pm):
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_tasks(registry):
    from bridgehost_steps.task import SequenceTask, SequenceTaskConfig, StepTask, StepTaskConfig  # not at import

    registry.add(
        "step",
        StepTask,
        config=StepTaskConfig,
        summary="a long-running async process(data, context): pause, resume, halt, jump, swap, retry",
    )
    registry.add("sequence", SequenceTask, config=SequenceTaskConfig, summary="named steps run in order; jump between them")


@hookimpl
def register_steps(registry):
    from bridgehost_steps.library import delay

    registry.add("delay", delay)


@hookimpl
def register_metrics(metrics, host):
    from bridgehost_steps.metrics import declare

    declare(metrics, host)
