"""examples/epics run from their configs against a real soft IOC, and the
demo on the embedded server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bridgehost_analysis.traction import generate_run
from epics_support import Watch

EXAMPLES = Path(__file__).parents[2] / "examples" / "epics"


def config(name: str, replace: dict[str, str], tmp_path: Path) -> str:
    text = (EXAMPLES / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_motor_example_reads_velocity_and_writes_position(ioc, start_host, tmp_path):
    i = ioc(EXAMPLES / "motor.db")
    P = i.prefix
    host = start_host(config("motor.toml", {"MOTOR:01:": P}, tmp_path), {**i.client_env, "PYTHONPATH": str(EXAMPLES)})
    with i.client() as c:
        c.put(P + "Vel:SP", 4.0)
        watch = Watch(c, [P + "Pos:RBV", P + "Trigger"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for p, v, _ in ev if p.endswith("Trigger")][-1:] == [0] and len(ev) > 3)
        assert c.get(P + "Pos:RBV") == 2.0
        assert int(c.get(P + "TaskStatus")) == 0
    assert "SUCCESS in" in host.output()


def test_traction_analysis_runs_from_a_trigger_put(ioc, start_host, tmp_path):
    run = generate_run(tmp_path / "datastore")
    i = ioc()
    P = i.prefix
    text = config("traction.toml", {"RIG:01:": P, "../traction/datastore": str(tmp_path / "datastore"),
                                    "2026-04-20T12-00-00Z": run.run_id}, tmp_path)
    host = start_host(text, i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "TaskDuration"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: len(ev) >= 2)  # the initial value, then the run's
        assert int(c.get(P + "TaskStatus")) == 0
        assert float(c.get(P + "TaskDuration")) > 0
    assert "running analyze_traction.py:calculate_results" in host.output()


def test_demo_epics_prints_task_status_and_duration():
    result = subprocess.run([sys.executable, "-m", "bridgehost.cli", "demo", "epics"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TaskStatus   0 (Success)" in result.stdout
    assert "TaskDuration" in result.stdout
    assert result.stderr.count("SUCCESS in") == 1  # one put, one run
