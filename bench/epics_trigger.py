"""Trigger PV to done, against a real soft IOC, with a trivial callable task.

Starts a soft IOC with bridgehost.db (``bridgehost_epics.softioc``) and
``bridgehost run`` as its own process (epics trigger, heartbeat every 1 s,
task ``platform:python_version``), then measures from a PV Access client:

- ``p50_ms``/``p99_ms``/``max_ms``: put of Trigger=1 to the monitor update of
  TaskDuration, which bridgehost writes right after TaskStatus (an mbbi posts
  a monitor only when its state changes, so an unchanged Success posts none);
  one cycle at a time, each after Trigger was reset;
- ``first_trigger_ms``: the same for the first put after the host reported
  ready (its handshake's channels connected at start, not on first use);
  not among the cycles above. The client made its own first put (a put of 0
  to Trigger, which runs nothing) before the host started: a PV Access
  client's first put costs it a one-time set-up, ``client_first_put_ms``,
  which is the client's, not the host's;
- ``after_pause_p50_ms``: the same for ``--pauses`` puts each made after
  0.5 s without one, the fair comparison for a first trigger: the cycles of
  ``p50_ms`` follow each other at once, with every process on the path
  awake and its caches warm;
- ``max_rate_hz``: back-to-back handshakes, the next put as soon as Trigger is
  reset (closed loop);
- ``triggers_sent``/``runs_completed``: puts at ``--rate`` Hz (default 1000 at
  200 Hz) in queue mode, and the runs the host completed for them;
- ``idle_cpu_percent``: the host process's CPU while idle (heartbeat only).

Prints one JSON line, with ``os.getloadavg()``. Leaves nothing running.

    uv run python bench/epics_trigger.py [--cycles 300] [--puts 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from _host import stop
from bridgehost_epics.names import db_path
from bridgehost_epics.softioc import SoftIoc

PREFIX = "BENCH:"
CONFIG = f"""
[host]
name = "epics-bench"

[[triggers]]
kind = "epics"
prefix = "{PREFIX}"
task = "trivial"
on_busy = "queue"

[[tasks]]
name = "trivial"
kind = "callable"
target = "platform:python_version"   # trivial: a pure-Python function, no argument
queue_size = 2000

[[watchdogs]]
kind = "epics-heartbeat"
prefix = "{PREFIX}"
period_s = 1.0
"""

PAUSE_S = 0.5


class Updates:
    """Counts monitor updates of one PV and lets a thread wait for the next."""

    def __init__(self, ctxt, pv: str):
        self.cond = threading.Condition()
        self.n = 0
        self.last = None
        self.sub = ctxt.monitor(pv, self._on)

    def _on(self, value) -> None:
        with self.cond:
            self.n += 1
            self.last = value
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError("no update")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300, help="latency cycles (default 300)")
    parser.add_argument("--puts", type=int, default=1000, help="puts at --rate (default 1000)")
    parser.add_argument("--rate", type=float, default=200.0, help="Hz (default 200)")
    parser.add_argument("--pauses", type=int, default=5, help=f"triggers after {PAUSE_S} s without one (default 5)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (default 10 s)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bridgehost-epics-bench-") as tmp:
        folder = Path(tmp)
        ioc = SoftIoc(PREFIX, [db_path()], folder / "ioc.log")
        ioc.start()
        (folder / "bench.toml").write_text(CONFIG)
        env = {**os.environ, **ioc.client_env}
        log = folder / "host.log"
        procs: list[subprocess.Popen] = []

        def start_host() -> subprocess.Popen:
            with open(log, "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "bridgehost.cli", "run", str(folder / "bench.toml")],
                                              stdout=out, stderr=subprocess.STDOUT, env=env))
            return procs[0]

        try:
            with ioc.client() as c:
                result = measure(c, start_host, log, args)
        finally:
            for host in procs:
                stop(host)
            ioc.kill()
    print(json.dumps(result))
    return 0


def measure(c, start_host: Callable[[], subprocess.Popen], log: Path, args: argparse.Namespace) -> dict:
    P = PREFIX
    duration = Updates(c, P + "TaskDuration")
    trigger = Updates(c, P + "Trigger")
    duration.wait_for(lambda u: u.n >= 1)
    trigger.wait_for(lambda u: u.n >= 1)
    # The client's own first put (its PV Access client's one-time set-up), before the host
    # starts: a put of 0 to Trigger runs nothing, and first_trigger_ms is the host's alone.
    t0 = time.perf_counter()
    c.put(P + "Trigger", 0, get=False)
    client_first_put_ms = (time.perf_counter() - t0) * 1000
    host = start_host()
    deadline = time.monotonic() + 30
    while not all(text in log.read_text() for text in ("monitoring ", " running: tasks")):  # the host reported ready
        if host.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the host did not start:\n{log.read_text()}")
        time.sleep(0.05)

    def cycle() -> float:
        """One put of Trigger=1: ms to the TaskDuration update; returns after the reset."""
        before = duration.n
        t0 = time.perf_counter()
        c.put(P + "Trigger", 1, get=False)
        duration.wait_for(lambda u: u.n > before)
        ms = (time.perf_counter() - t0) * 1000
        trigger.wait_for(lambda u: int(u.last) == 0)
        return ms

    # the first (just after start) is first_trigger_ms, not in the p50
    latencies = [cycle() for _ in range(args.cycles + 1)]
    after_pause = []
    for _ in range(args.pauses):
        time.sleep(PAUSE_S)
        after_pause.append(cycle())

    t0 = time.perf_counter()
    back_to_back = max(100, args.cycles)
    for _ in range(back_to_back):
        before = trigger.n
        c.put(P + "Trigger", 1, get=False)
        trigger.wait_for(lambda u, before=before: u.n > before and int(u.last) == 0)  # reset: handshake done
    max_rate = back_to_back / (time.perf_counter() - t0)

    runs_before = log.read_text().count("SUCCESS in")
    refused_before = int(c.get(P + "Refused"))
    period = 1.0 / args.rate
    start = time.perf_counter()
    for k in range(args.puts):
        delay = start + k * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        c.put(P + "Trigger", 1, get=False)
    sent_s = time.perf_counter() - start
    deadline = time.monotonic() + 60
    while log.read_text().count("SUCCESS in") - runs_before < args.puts and time.monotonic() < deadline:
        time.sleep(0.1)
    runs = log.read_text().count("SUCCESS in") - runs_before
    refused = int(c.get(P + "Refused")) - refused_before

    proc = psutil.Process(host.pid)
    time.sleep(1.0)  # let the queue's tail settle
    proc.cpu_percent(None)
    time.sleep(args.idle_s)
    idle_cpu = proc.cpu_percent(None)

    first, lat = latencies[0], sorted(latencies[1:])
    return {
        "bench": "epics_trigger",
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
        "max_ms": round(lat[-1], 3),
        "latency_cycles": len(lat),
        "first_trigger_ms": round(first, 3),
        "client_first_put_ms": round(client_first_put_ms, 3),
        "after_pause_p50_ms": round(statistics.median(after_pause), 3) if after_pause else None,
        "latency_to": "TaskDuration update (written right after TaskStatus)",
        "max_rate_hz": round(max_rate, 1),
        "triggers_sent": args.puts,
        "send_rate_hz": round(args.puts / sent_s, 1),
        "runs_completed": runs,
        "refused": refused,
        "idle_cpu_percent": round(idle_cpu, 2),
        "idle_window_s": args.idle_s,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    sys.exit(main())
