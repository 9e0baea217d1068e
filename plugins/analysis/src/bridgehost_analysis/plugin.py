"""The bridgehost plugin: registers the ``analysis`` task kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost import hookimpl

from bridgehost_analysis.task import AnalysisTask, AnalysisTaskConfig

if TYPE_CHECKING:
    from bridgehost.registry import Registry


@hookimpl
def register_tasks(registry: Registry) -> None:
    registry.add(
        "analysis",
        AnalysisTask,
        config=AnalysisTaskConfig,
        summary="run a datastore script's calculate_results(ctx) in a fresh, limited process",
    )
