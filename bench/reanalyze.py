"""bridgehost reanalyze: a datastore re-analysed on all cores and on Dask.

Generates, in a temporary folder it removes, ``--runs`` traction-like runs
(``--samples`` samples each: one run written by the example's generator,
``bridgehost_analysis.traction.generate_run``, then copied under other run
ids) and ``--tiny`` tiny runs (a ``project.json`` and one cycle), and
prints one JSON line:

- ``runs``: traction runs in the main measurement;
- ``local_runs_per_s``: AutoCore's example ``analyze_traction.py`` over them,
  ``bridgehost reanalyze`` (a subprocess), local executor, all CPUs;
- ``naive_runs_per_s``: the obvious way, one ``python`` process per run
  that reads the run (json, ``np.load``) and calls the script, one after the
  other over a sample of ``--naive`` runs;
- ``inprocess_runs_per_s``: the same script called in a loop in this
  process on ``Run.ctx()``, no isolation, one core, over ``--inprocess`` runs;
- ``ratio_vs_naive``, ``ratio_vs_inprocess``: ``local_runs_per_s`` over those;
- ``dask_runs_per_s``: the same runs (``--force``) on a ``LocalCluster`` of
  2 worker processes, 1 thread each, started beforehand (its start,
  ``dask_cluster_start_s``, is not in the rate; connecting and starting the
  workers' zygotes is);
- ``dask_empty_tasks_per_s``: no-op tasks per second on that cluster (what
  a task costs the scheduler and workers: why runs are grouped);
- ``trivial_runs_per_s``: a trivial script over the tiny runs (the command's
  own rate, from its summary); ``cpu_ms_per_run_trivial``: CPU time of the
  command and every process under it (zygotes, runs, record writers) per
  run: the pure cost of isolation plus the provenance record;
- ``client_rss_mb``: peak RSS of the command driving the tiny batch;
- ``resume_s``: the same tiny-run command again, everything already done
  (wall time of the command, its start included);
- ``bench_wall_s``: the whole benchmark, data generation included;
  ``phases_s``: its parts;
- ``loadavg``: other work on the machine skews every rate.

    uv run python bench/reanalyze.py [--runs 2000] [--tiny 20000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bridgehost_analysis.datastore import Datastore
from bridgehost_analysis.traction import SCRIPT, generate_run

TRIVIAL = "def calculate_results(ctx):\n    return {'n': len(ctx['cycle_history'])}\n"
COMMAND = """
import json, resource, sys, time
from bridgehost.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - t0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "wall_s": wall, "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                  "rss_mb": me.ru_maxrss / 1024}), file=sys.stderr)
"""
NAIVE = """
import importlib.util, json, os, sys
import numpy as np
root, project_id, definition_id, run_id, script = sys.argv[1:]
run = os.path.join(root, "results", project_id, definition_id, run_id)
def read(name):
    try:
        with open(os.path.join(run, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
with open(os.path.join(run, "cycle_history.jsonl")) as f:
    cycles = [json.loads(line) for line in f if line.strip()]
traces = {}
for trace in os.listdir(os.path.join(run, "traces")):
    folder = os.path.join(run, "traces", trace)
    traces[trace] = {c[:-4]: np.load(os.path.join(folder, c)).tolist() for c in os.listdir(folder)}
ctx = {"project": read("project.json"), "configuration": read("configuration.json"), "results": read("results.json"),
       "cycle_history": cycles, "raw_data": traces, "run_id": run_id, "custom_params": {},
       "project_id": project_id, "definition_id": definition_id}
spec = importlib.util.spec_from_file_location("script", os.path.join(root, "scripts", script))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module.calculate_results(ctx)))
"""


def command(*args: str) -> tuple[dict, str]:
    """Run ``bridgehost reanalyze ARGS`` in a new interpreter; its figures and stdout."""
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, "reanalyze", *args, "--no-progress"], capture_output=True, text=True
    )
    figures = json.loads(done.stderr.strip().splitlines()[-1])
    if figures["code"] not in (0,):
        raise SystemExit(f"reanalyze {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return figures, done.stdout.strip().splitlines()[-1]


def rate(summary: str) -> float:
    return float(summary.rsplit(",", 1)[1].split()[0])


def make_traction(root: Path, count: int, samples: int) -> Datastore:
    first = generate_run(root, run_id="run-00000", samples=samples)
    store = first.store
    for i in range(1, count):
        shutil.copytree(first.path, store.run(first.project_id, first.definition_id, f"run-{i:05d}").path)
    return store


def make_tiny(root: Path, count: int) -> Datastore:
    store = Datastore(root)
    store.scripts_dir.mkdir(parents=True)
    (store.scripts_dir / "trivial.py").write_text(TRIVIAL)

    def make(i: int) -> None:
        folder = str(store.run("tiny", f"def-{i // 1000:02d}", f"run-{i:05d}").path)
        os.makedirs(folder)
        for name, content in (("project.json", b'{"customer": "bench"}'), ("cycle_history.jsonl", b'{"cycle_index": 1}\n')):
            fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, content)
            os.close(fd)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # file creation waits on the file system, not the CPU
        list(pool.map(make, range(count)))
    return store


def naive(store: Datastore, runs: list, script: str) -> float:
    t0 = time.perf_counter()
    for run in runs:
        subprocess.run([sys.executable, "-c", NAIVE, str(store.root), *run.ids.values(), script], check=True, capture_output=True)
    return len(runs) / (time.perf_counter() - t0)


def inprocess(store: Datastore, runs: list, script: str) -> float:
    spec = importlib.util.spec_from_file_location("bench_script", store.scripts_dir / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    t0 = time.perf_counter()
    for run in runs:
        module.calculate_results(run.ctx())
    return len(runs) / (time.perf_counter() - t0)


def _noop(i: int) -> int:
    return i


def dask_rate(store: Datastore, empty_tasks: int) -> tuple[float, float, float]:
    """The batch's rate on a 2-process LocalCluster, the cluster's start
    time, and how many empty tasks per second it runs (the scheduler's and
    workers' cost per task, which grouping runs into tasks amortises)."""
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=logging.CRITICAL
    ) as cluster:
        started = time.perf_counter() - t0
        _, summary = command(str(store.root), "--script", SCRIPT, "--force", "--scheduler", cluster.scheduler_address)
        with Client(cluster) as client:
            client.gather(client.map(_noop, range(100), pure=False))  # warm
            t1 = time.perf_counter()
            client.gather(client.map(_noop, range(empty_tasks), pure=False))
            tasks_per_s = empty_tasks / (time.perf_counter() - t1)
    return rate(summary), started, tasks_per_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=45_200)
    parser.add_argument("--tiny", type=int, default=20_000)
    parser.add_argument("--naive", type=int, default=50, help="runs in the naive sample (one interpreter each)")
    parser.add_argument("--inprocess", type=int, default=500)
    parser.add_argument("--empty-tasks", type=int, default=500, help="no-op Dask tasks timed on the LocalCluster")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    phases: dict[str, float] = {}
    last = started

    def phase(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name] = round(now - last, 1)
        last = now

    with tempfile.TemporaryDirectory(prefix="bridgehost-bench-") as tmp:
        store = make_traction(Path(tmp) / "traction", args.runs, args.samples)
        sample = [store.run("acme-traction", "translational-traction", f"run-{i:05d}") for i in range(args.runs)]
        phase("generate_traction")
        _, summary = command(str(store.root), "--script", SCRIPT)
        local = rate(summary)
        phase("local")
        naive_rate = naive(store, sample[: args.naive], SCRIPT)
        phase("naive")
        inprocess_rate = inprocess(store, sample[: args.inprocess], SCRIPT)
        phase("inprocess")
        dask, cluster_s, tasks_per_s = (None, None, None) if args.no_dask else dask_rate(store, args.empty_tasks)
        phase("dask")
        shutil.rmtree(store.root)

        tiny = make_tiny(Path(tmp) / "tiny", args.tiny)
        phase("generate_tiny")
        first, summary = command(str(tiny.root), "--script", "trivial.py")
        trivial = rate(summary)
        phase("trivial")
        again, _ = command(str(tiny.root), "--script", "trivial.py")
        phase("resume")
    print(
        json.dumps(
            {
                "benchmark": "reanalyze",
                "runs": args.runs,
                "local_runs_per_s": local,
                "naive_runs_per_s": round(naive_rate, 1),
                "inprocess_runs_per_s": round(inprocess_rate, 1),
                "ratio_vs_naive": round(local / naive_rate, 2),
                "ratio_vs_inprocess": round(local / inprocess_rate, 2),
                "dask_runs_per_s": dask,
                "dask_cluster_start_s": round(cluster_s, 2) if cluster_s is not None else None,
                "dask_empty_tasks_per_s": round(tasks_per_s, 1) if tasks_per_s is not None else None,
                "tiny_runs": args.tiny,
                "trivial_runs_per_s": trivial,
                "cpu_ms_per_run_trivial": round(first["cpu_s"] / args.tiny * 1000, 2),
                "client_rss_mb": round(first["rss_mb"], 1),
                "resume_s": round(again["wall_s"], 2),
                "bench_wall_s": round(time.perf_counter() - started, 1),
                "phases_s": phases,
                "cpus": os.cpu_count(),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
