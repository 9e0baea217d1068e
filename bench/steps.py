"""Steps control: 1000 concurrent processes in one host, paused and resumed;
one control request's round trip over ZeroMQ.

Starts a host (zmq transport, a ``step`` task running the built-in
``delay`` step, concurrency PROCESSES) on a free loopback port in this
process, starts PROCESSES jobs, then:

- pause_all_ms / resume_all_ms: from the first pause (resume) request to the
  last confirmation, i.e. the last job's ``paused`` (``running``) state
  announcement; requests through the Python control API (what an EPICS or
  ZeroMQ adapter calls), with a ZeroMQ client subscribed so every
  announcement is also broadcast;
- control_p50_ms / control_p95_ms: ``steps.pause`` and ``steps.resume``
  alternately on one job from a DEALER client, each timed from send to
  response; status_p50_ms the same for ``steps.status``.

Prints one JSON line (with os.getloadavg(): the figures depend on what else
the machine runs). Leaves nothing running.

    uv run python bench/steps.py [--processes 1000] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
import tomllib

from bridgehost.config import parse_config
from bridgehost.host import Host
from bridgehost.plugins import load_plugins
from bridgehost_ipc.client import Client
from bridgehost_steps import StepsController

CONFIG = """
[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:*"

[[tasks]]
name = "bench.hold"
kind = "step"
target = "delay"
data = {{ seconds = 3600 }}
timeout_s = 3600
concurrency = {processes}
queue_size = 0
"""


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def round_trips(endpoint: str, job_id: str, requests: int) -> tuple[list[float], list[float]]:
    control, status = [], []
    with Client(endpoint) as client:
        for i in range(requests):
            topic = "steps.pause" if i % 2 == 0 else "steps.resume"
            started = time.perf_counter()
            response = client.call(topic, {"job_id": job_id}, timeout_s=30)
            control.append(time.perf_counter() - started)
            if not response.success:
                raise SystemExit(f"{topic} refused: {response.error_message}")
            started = time.perf_counter()
            client.call("steps.status", {"job_id": job_id}, timeout_s=30)
            status.append(time.perf_counter() - started)
            if topic == "steps.pause":  # resume only once the pause took effect
                while client.call("steps.status", {"job_id": job_id}).data["state"] != "paused":
                    time.sleep(0.001)
    return control, status


async def measure(processes: int, requests: int, subscribe: bool = True) -> dict:
    plugins = load_plugins(load=["steps", "ipc"])
    host = Host(parse_config(tomllib.loads(CONFIG.format(processes=processes)), plugins), plugins)
    controller = StepsController.of(host)
    counts: dict[str, int] = {}
    reached = asyncio.Event()
    target: list = [None, 0]

    def listener(announcement) -> None:
        if announcement.topic == "steps.state":
            state = announcement.data["state"]
            counts[state] = counts.get(state, 0) + 1
            if state == target[0] and counts[state] >= target[1]:
                reached.set()

    controller.subscribe(listener)
    await host.start()
    endpoint = host.transports["zmq"].endpoint
    subscriber = Client(endpoint)
    try:
        if subscribe:
            await asyncio.to_thread(subscriber.call, "host.ping")  # a peer: announcements are broadcast to it
        ids = [f"p{i}" for i in range(processes)]
        for job_id in ids:
            answer, _ = controller.start("bench.hold", job_id=job_id)
            assert answer.accepted, answer
        while sum(1 for r in controller.runs.values() if r.pausable) < processes:
            await asyncio.sleep(0.01)

        async def all_to(control, state: str) -> float:
            counts.pop(state, None)
            target[:] = [state, processes]
            reached.clear()
            started = time.perf_counter()
            for job_id in ids:
                answer = control(job_id)
                assert answer.accepted, answer
            await asyncio.wait_for(reached.wait(), 60)
            return (time.perf_counter() - started) * 1000

        pause_ms = await all_to(controller.pause, "paused")
        resume_ms = await all_to(controller.resume, "running")
        await asyncio.sleep(0.2)  # let the broadcasts drain before timing round trips
        subscriber.take_broadcasts()
        control, status = await asyncio.to_thread(round_trips, endpoint, ids[0], requests)
        for job_id in ids:
            controller.halt(job_id)
    finally:
        subscriber.close()
        await host.stop(grace_s=30)
    return {
        "bench": "steps",
        "processes": processes,
        "pause_all_ms": round(pause_ms, 1),
        "resume_all_ms": round(resume_ms, 1),
        "control_p50_ms": round(percentile(control, 50) * 1000, 3),
        "control_p95_ms": round(percentile(control, 95) * 1000, 3),
        "status_p50_ms": round(percentile(status, 50) * 1000, 3),
        "requests": len(control),
        "broadcast_peers": 1 if subscribe else 0,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400, help="control round trips to time")
    parser.add_argument("--no-subscriber", action="store_true", help="no ZeroMQ peer: announcements are not broadcast")
    args = parser.parse_args()
    logging.getLogger("bridgehost").setLevel(logging.ERROR)  # 1000 halted jobs would log a line each
    print(json.dumps(asyncio.run(measure(args.processes, args.requests, not args.no_subscriber))))


if __name__ == "__main__":
    main()
