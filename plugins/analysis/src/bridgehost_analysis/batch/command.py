"""``bridgehost reanalyze``: the command line of ``bridgehost_analysis.batch``.

Registered by bridgehost-analysis's ``register_commands`` hookimpl; this
module imports only argparse-level things, the batch itself is imported
when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "run an analysis over many saved runs of a datastore (local cores or a Dask cluster)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datastore", metavar="DATASTORE", type=Path, help="the datastore's root folder")
    what = parser.add_argument_group("what to run (one of)")
    what.add_argument("--script", metavar="NAME", help="a script of DATASTORE/scripts/, e.g. analyze_traction.py")
    what.add_argument("--function", metavar="F", help="with --script: the function to call (default calculate_results)")
    what.add_argument("--analysis", metavar="NAME", help="a registered analysis (bridgehost plugins), e.g. traction.max_force")
    which = parser.add_argument_group("which runs (default: all)")
    which.add_argument("--project", metavar="GLOB", default="*", help="project ids matching this glob")
    which.add_argument("--definition", metavar="GLOB", default="*", help="definition ids matching this glob")
    which.add_argument("--run", metavar="GLOB", default="*", help="run ids matching this glob")
    which.add_argument("--runs-from", metavar="FILE", type=Path, help="the runs listed in FILE, one project/definition/run a line")
    how = parser.add_argument_group("how")
    how.add_argument("--custom-params", metavar="JSON", default="{}", help="a JSON object passed to every run as ctx['custom_params']")
    how.add_argument("--timeout", metavar="S", type=float, default=60.0, help="wall-clock seconds one run may take (default 60)")
    how.add_argument("--memory-limit-mb", metavar="MB", type=int, default=2048, help="address-space limit of each run (default 2048)")
    how.add_argument("--save", action="store_true", help="merge each result into its run's results.json")
    how.add_argument("--max-saved-results-mb", metavar="MB", type=int, default=64, help="with --save: the largest results.json a merge may leave (default 64)")
    how.add_argument("--force", action="store_true", help="analyse again runs already analysed by the same script and parameters")
    where = parser.add_argument_group("where")
    where.add_argument("--workers", metavar="N", type=int, help="runs at once (default: the number of CPUs; with --scheduler: per Dask worker)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (tcp://HOST:8786), or 'local' for a LocalCluster on 127.0.0.1")
    parser.add_argument("--output", metavar="FILE", type=Path, help="one row per run: FILE.csv, FILE.jsonl or FILE.parquet")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="a progress bar even when stderr is not a terminal")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="log lines instead of a bar")


def run(args: argparse.Namespace) -> int:
    from bridgehost_analysis.batch.core import BadBatch, Options, reanalyze

    try:
        custom_params = json.loads(args.custom_params)
    except json.JSONDecodeError as e:
        raise BadBatch("--custom-params", f"not valid JSON ({e})", "quote it, e.g. '{\"limit\": 400}'") from None
    except RecursionError:
        raise BadBatch("--custom-params", "nested too deeply to be read", "flatten it") from None
    options = Options(
        datastore=args.datastore,
        script=args.script,
        function=args.function,
        analysis=args.analysis,
        project=args.project,
        definition=args.definition,
        run=args.run,
        runs_from=args.runs_from,
        custom_params=custom_params,
        timeout_s=args.timeout,
        memory_limit_mb=args.memory_limit_mb,
        save=args.save,
        max_saved_results_mb=args.max_saved_results_mb,
        force=args.force,
        workers=args.workers,
        scheduler=args.scheduler,
        output=args.output,
        progress=args.progress,
    )
    summary = reanalyze(options)
    print(summary.line(), flush=True)
    return summary.exit_code
