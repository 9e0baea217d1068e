"""A registered analysis costs what a script costs: both run in a fresh
child process. Also the cost of one log line in each format.

Builds a host in this process with one analysis task over a generated
traction run, then alternates RUNS requests naming the seed's script
(``"script": "analyze_traction.py"``) and the same function registered by
name (``"analysis": "traction.max_force"``), and prints one JSON line:
runs, script_p50_ms, named_p50_ms, script_p99_ms, named_p99_ms, ratio,
human_log_line_us, json_log_line_us, loadavg. Leaves nothing running.

    uv run python bench/named_analysis.py [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from bridgehost.config import parse_config
from bridgehost.host import Host
from bridgehost.jobs import Request, Status
from bridgehost.logs import HumanFormatter, JsonFormatter
from bridgehost.plugins import load_plugins
from bridgehost_analysis.traction import SCRIPT, generate_run

CONFIG = """
[[tasks]]
name = "analyse"
kind = "analysis"
datastore = "{datastore}"
"""


async def measure(folder: Path, runs: int) -> dict[str, list[float]]:
    run = generate_run(folder / "datastore")
    plugins = load_plugins(load=["analysis"])
    config = parse_config(tomllib.loads(CONFIG.format(datastore=run.store.root)), plugins)
    host = Host(config, plugins)
    await host.start()
    times: dict[str, list[float]] = {"script": [], "named": []}
    requests = {"script": run.request(SCRIPT), "named": {"analysis": "traction.max_force", **run.ids}}
    try:
        for _ in range(runs):
            for kind, params in requests.items():  # alternate, so load drifts hit both alike
                started = time.perf_counter()
                outcome = await host.submit(Request(task="analyse", params=params))
                times[kind].append(time.perf_counter() - started)
                if outcome.status is not Status.SUCCESS:
                    raise SystemExit(f"{kind} failed: {outcome.error}")
    finally:
        await host.stop()
    return times


def log_line_us(formatter: logging.Formatter, n: int = 20000) -> float:
    record = logging.LogRecord("bridgehost.job", logging.INFO, __file__, 1, "SUCCESS in %.3f s", (0.012,), None)
    record.job_id, record.task, record.ref = "3f2a" * 8, "python.run_analysis", "17"
    started = time.perf_counter()
    for _ in range(n):
        formatter.format(record)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times = asyncio.run(measure(Path(tmp), args.runs))
    p50 = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    p99 = {k: sorted(v)[max(0, round(len(v) * 0.99) - 1)] * 1e3 for k, v in times.items()}
    print(json.dumps({
        "runs": args.runs,
        "script_p50_ms": round(p50["script"], 2),
        "named_p50_ms": round(p50["named"], 2),
        "script_p99_ms": round(p99["script"], 2),
        "named_p99_ms": round(p99["named"], 2),
        "ratio": round(p50["named"] / p50["script"], 3),
        "human_log_line_us": round(log_line_us(HumanFormatter()), 2),
        "json_log_line_us": round(log_line_us(JsonFormatter("rig")), 2),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
