"""The bridgehost plugin: registers the ``analysis`` task kind, the
``traction.max_force`` analysis (AutoCore's example traction script, by
name) and the ``bridgehost reanalyze`` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from bridgehost import hookimpl
from bridgehost_analysis import hookspecs

if TYPE_CHECKING:
    from bridgehost.commands import PluginCommands
    from bridgehost.registry import PluginCatalog, PluginRegistry
    from bridgehost_analysis.hookspecs import NamedAnalysis


@hookimpl
def add_hookspecs(pm: pluggy.PluginManager) -> None:
    pm.add_hookspecs(hookspecs)


@hookimpl
def register_tasks(registry: PluginRegistry) -> None:
    from bridgehost_analysis.task import AnalysisTask, AnalysisTaskConfig  # not at import: bridgehost --help

    registry.add(
        "analysis",
        AnalysisTask,
        config=AnalysisTaskConfig,
        summary="run a datastore script's calculate_results(ctx) in a fresh, limited process",
    )


@hookimpl
def register_analyses(registry: PluginCatalog[NamedAnalysis]) -> None:
    registry.add(
        "traction.max_force",
        "bridgehost_analysis.traction.scripts.analyze_traction:calculate_results",
        summary="AutoCore's example traction analysis: max_force and avg_force of the run's force trace",
    )


@hookimpl
def register_commands(commands: PluginCommands) -> None:
    from bridgehost_analysis.batch import command  # argparse only: the batch loads when the command runs

    commands.add("reanalyze", command.run, configure=command.configure, help=command.HELP)


@hookimpl
def register_demos(registry: PluginRegistry) -> None:
    registry.add("traction", _traction_demo, summary="AutoCore's example traction analysis over ZeroMQ, on generated data")


def _traction_demo() -> int:
    from bridgehost_analysis.demo import traction  # only when asked: it imports the host runtime

    return traction()


@hookimpl
def register_metrics(metrics, host) -> None:
    from bridgehost_analysis.metrics import declare

    declare(metrics, host)
