"""A 10-million-sample float64 trace: request to result over ZeroMQ against
the same computation done in this process straight from the ``.npy`` file.

Saves one run with a ``force`` channel of ``--samples`` float64 values
(80 MB), starts `bridgehost run` (zmq transport and trigger, the analysis
task with the zygote runner) on a free loopback port, and asks for the
maximum with the trace as numpy arrays (``raw_data = "arrays"``, the task's
setting), as read-only memory maps (``"mmap"``, per request) and as lists of
floats (``"lists"``, per request, the seed's default). Each path is
compared with the same work in this process: ``np.load(path).max()``,
``np.load(path, mmap_mode="r").max()``, ``max(np.load(path).tolist())``.
Prints one JSON line: ``samples``; ``p50_ms``, ``baseline_inprocess_ms``,
``ratio`` (arrays); the same prefixed ``mmap_`` and ``list_``;
``mmap_vs_load_ratio`` (the maps against ``np.load(path).max()``); ``loadavg``.
The file is read once before timing, so both sides read from the page cache.
Leaves nothing running.

    uv run python bench/large_trace.py [--samples 10000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _host import ZMQ_HOST, loadavg, ms, running_host, timed_calls
from bridgehost_analysis.datastore import Datastore

CONFIG = ZMQ_HOST + """
[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "./datastore"
raw_data = "arrays"
timeout_s = 120
"""
SCRIPTS = {
    "max_array.py": "def calculate_results(ctx):\n    return {'max': float(ctx['raw_data']['trace']['force'].max())}\n",
    "max_list.py": "def calculate_results(ctx):\n    return {'max': max(ctx['raw_data']['trace']['force'])}\n",
}


def inprocess(work: Callable[[], float], repeat: int) -> tuple[float, float]:
    """The median time of ``work()`` in ms, and its value."""
    times, value = [], 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        value = work()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2), value


def measure(folder: Path, samples: int, repeat: int) -> dict:
    store = Datastore(folder / "datastore")
    store.scripts_dir.mkdir(parents=True)
    for name, source in SCRIPTS.items():
        (store.scripts_dir / name).write_text(source)
    run = store.run("bench", "large", "r1")
    run.save(project={}, configuration={})
    force = np.random.default_rng(1).normal(size=samples)
    run.set_raw_trace(force=force)
    path = run.path / "traces" / "trace" / "force.npy"
    want = float(force.max())
    del force
    np.load(path).max()  # into the page cache
    paths = {
        "": ("max_array.py", None, lambda: float(np.load(path).max())),
        "mmap_": ("max_array.py", "mmap", lambda: float(np.load(path, mmap_mode="r").max())),
        "list_": ("max_list.py", "lists", lambda: max(np.load(path).tolist())),
    }
    figures: dict = {"benchmark": "large_trace", "samples": samples}
    with running_host(folder, CONFIG) as host:
        for prefix, (script, raw_data, work) in paths.items():
            request = run.request(script)
            if raw_data:
                request["raw_data"] = raw_data
            timed_calls(host.endpoint, "python.run_analysis", request, 1)  # warm up
            with_host = ms(timed_calls(host.endpoint, "python.run_analysis", request, repeat))["p50_ms"]
            baseline, value = inprocess(work, repeat)
            if value != want:
                raise SystemExit(f"the in-process {prefix or 'array '}path computed {value}, not {want}")
            figures |= {
                f"{prefix}p50_ms": with_host,
                f"{prefix}baseline_inprocess_ms": baseline,
                f"{prefix}ratio": round(with_host / baseline, 2),
            }
        # The maps against the usual in-process way, reading the whole file.
        figures["mmap_vs_load_ratio"] = round(figures["mmap_p50_ms"] / figures["baseline_inprocess_ms"], 2)
    figures["loadavg"] = loadavg()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridgehost-bench-") as tmp:
        figures = measure(Path(tmp), args.samples, args.repeat)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
