"""Round trip of python.run_analysis over ZeroMQ, every run in a fresh process.

Starts `bridgehost run` (zmq transport and trigger; the analysis task with
the zygote runner, the same with ``runner = "subprocess"``, and the obvious
implementation: a callable task starting a new ``python`` per request that
reads the run and calls the same script) on a free loopback port, and
prints one JSON line:

- ``p50_ms``, ``p99_ms``: one client, requests one after the other, trivial
  script on a small run (zygote runner), ``sandbox = "off"``;
  ``sandbox_p50_ms``, ``sandbox_p99_ms``: the same with the sandbox (the
  default, ``best-effort``: Landlock), on a second task of the same host,
  the two called in alternating batches so both see the same machine;
  ``sandbox_cost_ms``: the difference of the p50s;
- ``throughput_per_s``: ``--clients`` clients (threads of this process, each
  with its own DEALER) sending as fast as they get answers, and the
  ``loaded_p50_ms``/``loaded_p99_ms`` they saw;
- ``cpu_ms_per_run``: CPU time of the host and all its processes per run
  in the throughput phase (what a run costs, whatever else the machine does);
- ``baseline_subprocess_p50_ms`` (the obvious implementation),
  ``ratio_vs_subprocess`` (baseline p50 / zygote p50),
  ``subprocess_runner_p50_ms`` (``runner = "subprocess"``);
- ``timeout_margin_ms``: how long after its ``timeout_s`` (0.5 s) the answer
  to a hung script comes (p50 and max of ``--hostile`` requests), all its
  processes killed; ``fork_bomb_ms``: request to answer for a fork bomb
  (``max_processes`` 64), all its processes killed;
- ``idle_cpu_percent`` of the host and its processes over ``--idle-s``
  seconds with nothing to do, and their RSS (``rss_mb``: host, zygote,
  waiting children; ``uss_mb``: memory only they hold, the shared copy-on-write
  pages of the forks counted once, in the zygote);
- ``metrics_p50_ms``: ``p50_ms`` on a host that also has the
  ``prometheus`` transport, scraped every second (Prometheus' default is
  every 15 s); measured against ``metrics_plain_p50_ms``, the same host
  without it, alive at the same time, the two called in alternating
  batches so both see the same machine; ``metrics_cost_ms`` is the
  difference;
- ``loadavg``: the machine's load averages at the end (other work skews
  latency; ``cpu_ms_per_run`` much less).

Leaves nothing running.

    uv run python bench/analysis_roundtrip.py [--requests 500] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from _host import ZMQ_HOST, loadavg, ms, running_host, timed_calls
from bridgehost_analysis.datastore import Datastore

CONFIG = ZMQ_HOST + """
[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "./datastore"
concurrency = 2
queue_size = 256

[[tasks]]
name = "unconfined.run_analysis"
kind = "analysis"
datastore = "./datastore"
sandbox = "off"
concurrency = 2

[[tasks]]
name = "subprocess.run_analysis"
kind = "analysis"
runner = "subprocess"
datastore = "./datastore"
concurrency = 2

[[tasks]]
name = "hang.run_analysis"
kind = "analysis"
datastore = "./datastore"
timeout_s = 0.5

[[tasks]]
name = "obvious.run_analysis"
kind = "callable"
target = "bench_obvious:run_analysis"
concurrency = 2
"""
SCRIPT = "def calculate_results(ctx):\n    return {'n': len(ctx['cycle_history'])}\n"
HOSTILE = {
    "hang.py": "def calculate_results(ctx):\n    while True:\n        pass\n",
    "bomb.py": "import os\ndef calculate_results(ctx):\n    while True:\n        try:\n            os.fork()\n"
    "        except OSError:\n            pass\n",
}
OBVIOUS = '''"""The obvious implementation: a new python process per request, which
reads the run's files and calls the script."""

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).parent / "datastore"
CODE = """
import importlib.util, json, os, sys
root, project_id, definition_id, run_id, script, function = sys.argv[1:]
run = os.path.join(root, "results", project_id, definition_id, run_id)
def read(name, lines=False):
    try:
        with open(os.path.join(run, name)) as f:
            return [json.loads(x) for x in f if x.strip()] if lines else json.load(f)
    except FileNotFoundError:
        return [] if lines else {}
ctx = {"project": read("project.json"), "configuration": read("configuration.json"),
       "results": read("results.json"), "cycle_history": read("cycle_history.jsonl", lines=True),
       "raw_data": {}, "run_id": run_id, "custom_params": {}}
spec = importlib.util.spec_from_file_location("script", os.path.join(root, "scripts", script))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(getattr(module, function)(ctx)))
"""


async def run_analysis(params):
    ids = [params["project_id"], params["definition_id"], params["run_id"], params["script"], params["function"]]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CODE, str(ROOT), *ids, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return json.loads(out)
'''


ONE_TASK = ZMQ_HOST + """
[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "./datastore"
concurrency = 2
"""
METRICS = """
[[transports]]
kind = "prometheus"
listen = "127.0.0.1:0"
"""
BATCHES = 20


def metrics_cost(folder: Path, request: dict, requests: int) -> dict:
    """Sequential p50 on two hosts alive at once, one with the prometheus
    transport (scraped every second), called in alternating batches."""
    for name in ("plain", "metrics"):
        (folder / name).mkdir()
        (folder / name / "datastore").symlink_to(folder / "datastore")
    with running_host(folder / "plain", ONE_TASK) as plain, running_host(folder / "metrics", ONE_TASK + METRICS) as observed:
        url = next(
            line.split("serving ", 1)[1].strip()
            for line in observed.log.read_text().splitlines()
            if "serving http://" in line
        )
        stop = threading.Event()

        def scrape() -> None:
            while not stop.wait(1.0):
                with urllib.request.urlopen(url, timeout=10) as page:
                    page.read()

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        times: dict[str, list[float]] = {"plain": [], "metrics": []}
        try:
            for host in (plain, observed):
                timed_calls(host.endpoint, "python.run_analysis", request, 3)  # warm up
            for _ in range(BATCHES):
                for name, host in (("plain", plain), ("metrics", observed)):
                    times[name] += timed_calls(host.endpoint, "python.run_analysis", request, max(1, requests // BATCHES))
        finally:
            stop.set()
            scraper.join(10)
    with_metrics, without = ms(times["metrics"])["p50_ms"], ms(times["plain"])["p50_ms"]
    return {
        "metrics_p50_ms": with_metrics,
        "metrics_plain_p50_ms": without,
        "metrics_cost_ms": round(with_metrics - without, 3),
    }


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """CPU time of ``procs``, with what their reaped children used."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def throughput(endpoint: str, request: dict, clients: int, per_client: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            latencies.extend(timed_calls(endpoint, "python.run_analysis", request, per_client))
        except BaseException as e:  # SystemExit from a failed call: report it below
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"a client failed: {errors[0]}")
    return len(latencies) / elapsed, latencies


def footprint(family: list[psutil.Process]) -> dict[str, float]:
    rss = uss = 0
    for p in family:
        try:
            info = p.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        uss += info.uss
    return {"rss_mb": round(rss / 2**20, 1), "uss_mb": round(uss / 2**20, 1), "processes": len(family)}


def measure(
    folder: Path, requests: int, clients: int, baseline_requests: int, hostile_requests: int, idle_s: float
) -> dict:
    store = Datastore(folder / "datastore")
    (store.scripts_dir).mkdir(parents=True)
    (store.scripts_dir / "trivial.py").write_text(SCRIPT)
    run = store.run("bench", "trivial", "r1")
    run.save(project={"customer": "bench"}, configuration={"speed": 10.0})
    run.append_cycle({"cycle_index": 1})
    for name, source in HOSTILE.items():
        (store.scripts_dir / name).write_text(source)
    (folder / "bench_obvious.py").write_text(OBVIOUS)
    request = run.request("trivial.py")
    with running_host(folder, CONFIG) as host:
        endpoint = host.endpoint
        for topic in ("python.run_analysis", "unconfined.run_analysis", "subprocess.run_analysis", "obvious.run_analysis"):
            timed_calls(endpoint, topic, request, 3)  # warm up
        sequential: list[float] = []
        confined: list[float] = []
        for _ in range(BATCHES):  # alternating, so both see the same machine
            sequential += timed_calls(endpoint, "unconfined.run_analysis", request, max(1, requests // BATCHES))
            confined += timed_calls(endpoint, "python.run_analysis", request, max(1, requests // BATCHES))
        family = host.family()
        cpu_before = cpu_seconds(family)
        rate, loaded = throughput(endpoint, request, clients, requests // clients)
        cpu_per_run = (cpu_seconds(host.family()) - cpu_before) / len(loaded)
        baseline = timed_calls(endpoint, "obvious.run_analysis", request, baseline_requests)
        fallback = timed_calls(endpoint, "subprocess.run_analysis", request, baseline_requests)
        hung = timed_calls(endpoint, "hang.run_analysis", run.request("hang.py"), hostile_requests, fail=True)
        bomb = timed_calls(endpoint, "python.run_analysis", run.request("bomb.py"), hostile_requests, fail=True)
        time.sleep(1.0)  # the last children exit, replacements are forked
        family = host.family()
        cpu_before, wall_before = cpu_seconds(family), time.monotonic()
        time.sleep(idle_s)
        idle_cpu = (cpu_seconds(family) - cpu_before) / (time.monotonic() - wall_before)
        memory = footprint(host.family())
    metrics = metrics_cost(folder, request, requests)
    zygote, baseline_ms, fallback_ms, loaded_ms = ms(sequential), ms(baseline), ms(fallback), ms(loaded)
    sandboxed = ms(confined)
    return {
        "benchmark": "analysis_roundtrip",
        "requests": len(sequential),
        "clients": clients,
        **zygote,
        "sandbox_p50_ms": sandboxed["p50_ms"],
        "sandbox_p99_ms": sandboxed["p99_ms"],
        "sandbox_cost_ms": round(sandboxed["p50_ms"] - zygote["p50_ms"], 3),
        "throughput_per_s": round(rate, 1),
        "loaded_p50_ms": loaded_ms["p50_ms"],
        "loaded_p99_ms": loaded_ms["p99_ms"],
        "cpu_ms_per_run": round(cpu_per_run * 1000, 2),
        "baseline_subprocess_p50_ms": baseline_ms["p50_ms"],
        "ratio_vs_subprocess": round(baseline_ms["p50_ms"] / zygote["p50_ms"], 1),
        "subprocess_runner_p50_ms": fallback_ms["p50_ms"],
        "timeout_margin_ms": {k: round(v - 500, 1) for k, v in ms(hung).items()},
        "fork_bomb_ms": ms(bomb),
        "idle_cpu_percent": round(idle_cpu * 100, 2),
        "idle_rss_mb": memory["rss_mb"],
        "idle_uss_mb": memory["uss_mb"],
        "idle_processes": memory["processes"],
        **metrics,
        "loadavg": loadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="sequential requests, and in all for the clients")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--baseline-requests", type=int, default=50)
    parser.add_argument("--hostile", type=int, default=10, help="requests of each hostile script")
    parser.add_argument("--idle-s", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridgehost-bench-") as tmp:
        figures = measure(Path(tmp), args.requests, args.clients, args.baseline_requests, args.hostile, args.idle_s)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
