"""Round trip of python.run_analysis over ZeroMQ, every run in a fresh process.

Starts a host (zmq transport and trigger, analysis task) on a free loopback
port in this process, sends REQUESTS requests for a trivial script from
CLIENTS client threads, and prints one JSON line: requests, clients,
p50_ms, p99_ms, max_ms, throughput_per_s. Leaves nothing running.

    uv run python bench/analysis_roundtrip.py [--requests 200] [--clients 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bridgehost.host import Host
from bridgehost_analysis.datastore import Datastore
from bridgehost_ipc.client import Client

CONFIG = """
[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:*"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "./datastore"
concurrency = 2
queue_size = 256
"""
SCRIPT = "def calculate_results(ctx):\n    return {'n': len(ctx['cycle_history'])}\n"


def client_thread(endpoint: str, request: dict, count: int, out: list[float]) -> None:
    with Client(endpoint) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.call("python.run_analysis", request, timeout_s=60)
            if not response.success:
                raise SystemExit(f"request failed: {response.error_message}")
            out.append(time.perf_counter() - started)


async def measure(folder: Path, requests: int, clients: int) -> dict:
    store = Datastore(folder / "datastore")
    (store.root / "scripts").mkdir(parents=True)
    (store.root / "scripts" / "trivial.py").write_text(SCRIPT)
    run = store.run("bench", "trivial", "r1")
    run.save(project={}, configuration={})
    run.append_cycle({"cycle_index": 1})
    (folder / "bench.toml").write_text(CONFIG)
    host = Host.from_file(folder / "bench.toml")
    await host.start()
    try:
        endpoint = host.transports["zmq"].endpoint
        await asyncio.to_thread(client_thread, endpoint, run.request("trivial.py"), 3, [])  # warm up
        latencies: list[float] = []
        threads = [
            threading.Thread(target=client_thread, args=(endpoint, run.request("trivial.py"), requests // clients, latencies))
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        elapsed = time.perf_counter() - started
    finally:
        await host.stop()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "benchmark": "analysis_roundtrip",
        "requests": len(ms),
        "clients": clients,
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
        "throughput_per_s": round(len(ms) / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridgehost-bench-") as tmp:
        print(json.dumps(asyncio.run(measure(Path(tmp), args.requests, args.clients))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
