"""Helpers of the EPICS tests: monitors that record what a client sees, and
``bridgehost run`` in its own process (stopped by PID). The soft IOC is
``bridgehost_epics.softioc.SoftIoc``: loopback, ports of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from p4p.client.thread import Context

HERE = Path(__file__).parent
WAIT_S = 30.0
"""Upper bound for anything a test waits for; reached only when it fails."""


class Watch:
    """Monitors of PVs, recording (pv, value, IOC timestamp) in arrival order."""

    def __init__(self, ctxt: Context, pvs: list[str]):
        self.events: list[tuple[str, object, float]] = []
        self.cond = threading.Condition()
        self.subs = [ctxt.monitor(pv, lambda v, pv=pv: self._add(pv, v)) for pv in pvs]

    def _add(self, pv: str, value) -> None:
        with self.cond:
            self.events.append((pv, value, value.timestamp))
            self.cond.notify_all()

    def wait(self, predicate, timeout: float = WAIT_S):
        """Wait until ``predicate(events)`` is true; returns the events."""
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.events), timeout):
                raise AssertionError(f"timed out; events: {[(p, str(v)) for p, v, _ in self.events]}")
            return list(self.events)

    def values(self, pv: str) -> list:
        with self.cond:
            return [v for p, v, _ in self.events if p == pv]

    def close(self) -> None:
        for s in self.subs:
            s.close()


class HostProcess:
    """``bridgehost run CONFIG`` that we started; output in ``log``."""

    def __init__(self, config: Path, env: dict[str, str], log: Path):
        self.log = log
        full = dict(os.environ)
        full.update(env)
        full["PYTHONPATH"] = os.pathsep.join([str(HERE), full.get("PYTHONPATH", "")])
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridgehost.cli", "run", str(config)],
                stdout=out, stderr=subprocess.STDOUT, env=full,
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_output(self, text: str, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in host output (exit {self.proc.poll()}):\n{self.output()}")
            time.sleep(0.05)
        return self.output()

    def wait_exit(self, timeout: float = WAIT_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"host did not exit:\n{self.output()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def deployment(prefix: str, target: str, *, queue_size: int = 64, trigger: str = "", heartbeat: str | None = None,
               task_extra: str = "") -> str:
    """A config: an epics trigger on ``prefix`` running callable ``target``."""
    text = f"""
[host]
name = "epics-test"
shutdown_grace_s = 2

[[triggers]]
kind = "epics"
prefix = "{prefix}"
task = "t"
{trigger}
""" + TASKS.format(target=target, queue_size=queue_size) + task_extra
    if heartbeat is not None:
        text += f"""
[[watchdogs]]
kind = "epics-heartbeat"
prefix = "{prefix}"
{heartbeat}
"""
    return text


TASKS = """
[[tasks]]
name = "t"
kind = "callable"
target = "epics_tasks:{target}"
queue_size = {queue_size}
"""


