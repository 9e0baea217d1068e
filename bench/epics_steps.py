"""Step control over EPICS, against a real soft IOC: the time from a put of
Pause=1 (Resume=1) to the State update ``paused`` (``running``), and to the
ControlAnswer update.

Starts a soft IOC with bridgehost.db (``bridgehost_epics.softioc``) and
``bridgehost run`` as its own process: an epics trigger whose task is the
built-in ``delay`` step (one hour, pausable), started by one Trigger put.
Then ``--cycles`` pause/resume cycles, one at a time, from a PV Access client:

- ``pause_state_p50_ms``/``_p99_ms``: put of Pause=1 to State ``paused``
  (the answer, then the process's next checkpoint, then the State write);
- ``resume_state_p50_ms``/``_p99_ms``: put of Resume=1 to State ``running``;
- ``answer_p50_ms``: put to the ControlAnswer update, both kinds;
- ``halt_to_idle_ms``: the final Halt to Busy=0 (halted, TaskStatus written).

Prints one JSON line, with ``os.getloadavg()``. Leaves nothing running.

    uv run python bench/epics_steps.py [--cycles 200]
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
from pathlib import Path

from _host import stop
from bridgehost_epics.names import STEP_STATES, db_path
from bridgehost_epics.softioc import SoftIoc

PREFIX = "BENCHSTEPS:"
CONFIG = f"""
[host]
name = "epics-steps-bench"

[[triggers]]
kind = "epics"
prefix = "{PREFIX}"
task = "hold"

[[tasks]]
name = "hold"
kind = "step"
target = "delay"
data = {{ seconds = 3600 }}
timeout_s = 7200
"""


class Seen:
    """Monitor updates of some PVs, with the time each arrived."""

    def __init__(self, ctxt, pvs: list[str]):
        self.cond = threading.Condition()
        self.events: list[tuple[str, object, float]] = []
        self.subs = [ctxt.monitor(pv, lambda v, pv=pv: self._on(pv, v)) for pv in pvs]

    def _on(self, pv: str, value) -> None:
        with self.cond:
            self.events.append((pv, value, time.perf_counter()))
            self.cond.notify_all()

    def first(self, pv: str, predicate, after: int, timeout: float = 30.0) -> float:
        """The arrival time of the first update of ``pv`` after event ``after`` that satisfies ``predicate``."""
        def found():
            return next((t for p, v, t in self.events[after:] if p == pv and predicate(v)), None)

        with self.cond:
            if not self.cond.wait_for(lambda: found() is not None, timeout):
                raise SystemExit(f"no update of {pv} within {timeout} s")
            return found()

    def close(self) -> None:
        for s in self.subs:
            s.close()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    P = PREFIX
    state = lambda name: lambda v: STEP_STATES[int(v)] == name
    with tempfile.TemporaryDirectory() as tmp:
        ioc = SoftIoc(P, [db_path()], Path(tmp) / "ioc.log")
        ioc.start()
        config = Path(tmp) / "bench.toml"
        config.write_text(CONFIG)
        with open(Path(tmp) / "host.log", "wb") as log:  # the host keeps its own copy of the fd
            host = subprocess.Popen([sys.executable, "-m", "bridgehost.cli", "run", str(config)], stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, **ioc.client_env})
        try:
            with ioc.client() as c:
                seen = Seen(c, [P + "State", P + "ControlAnswer", P + "Busy"])
                deadline = time.monotonic() + 30
                while "monitoring " + P + "HaltCount" not in Path(log.name).read_text():
                    if time.monotonic() > deadline or host.poll() is not None:
                        raise SystemExit(Path(log.name).read_text())
                    time.sleep(0.05)
                mark = len(seen.events)
                c.put(P + "Trigger", 1)
                seen.first(P + "State", state("running"), mark)
                pause, resume, answer = [], [], []
                for _ in range(args.cycles):
                    for pv, target, times in (("Pause", "paused", pause), ("Resume", "running", resume)):
                        mark = len(seen.events)
                        t0 = time.perf_counter()
                        c.put(P + pv, 1)
                        times.append((seen.first(P + "State", state(target), mark) - t0) * 1000)
                        answer.append((seen.first(P + "ControlAnswer", lambda v: True, mark) - t0) * 1000)
                mark = len(seen.events)
                t0 = time.perf_counter()
                c.put(P + "Halt", 1)
                halt_ms = (seen.first(P + "Busy", lambda v: int(v) == 0, mark) - t0) * 1000
                seen.close()
        finally:
            stop(host)
            ioc.kill()
    print(json.dumps({
        "bench": "epics_steps",
        "cycles": args.cycles,
        "pause_state_p50_ms": round(statistics.median(pause), 2),
        "pause_state_p99_ms": round(percentile(pause, 99), 2),
        "resume_state_p50_ms": round(statistics.median(resume), 2),
        "resume_state_p99_ms": round(percentile(resume, 99), 2),
        "answer_p50_ms": round(statistics.median(answer), 2),
        "halt_to_idle_ms": round(halt_ms, 2),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
