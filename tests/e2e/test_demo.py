"""`bridgehost demo`: the main job on the embedded default, no set-up."""

import math
import re
import subprocess
import sys

import numpy as np

from bridgehost_analysis.traction import generate_run


def test_demo_prints_the_traction_script_results(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # it needs no checkout and writes nothing where it runs
    )
    assert result.returncode == 0, result.stdout + result.stderr
    printed = dict(re.findall(r"^\s+(max_force|avg_force)\s+(-?[\d.]+(?:e[-+]?\d+)?)", result.stdout, re.MULTILINE))
    assert set(printed) == {"max_force", "avg_force"}, result.stdout
    # The demo's run is generate_run's default, which is deterministic: recompute it here.
    run = generate_run(tmp_path / "expected")
    force = np.load(run.path / "traces" / "trace" / "force.npy").astype(np.float64)
    assert math.isclose(float(printed["max_force"]), force.max(), rel_tol=1e-6)
    assert math.isclose(float(printed["avg_force"]), math.fsum(force) / len(force), rel_tol=1e-6)
    assert "tcp://127.0.0.1:" in result.stdout  # it went over a real loopback socket
    assert list(tmp_path.iterdir()) == [tmp_path / "expected"]


def test_demo_list_and_unknown_demo():
    listed = subprocess.run([sys.executable, "-m", "bridgehost.cli", "demo", "--list"], capture_output=True, text=True)
    assert listed.returncode == 0 and "traction" in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "bridgehost.cli", "demo", "nope"], capture_output=True, text=True)
    assert unknown.returncode == 2
    # every installed plugin's demos are listed (bridgehost-epics adds "epics")
    assert "demo 'nope' is not available (available: " in unknown.stderr
    assert "traction" in unknown.stderr.split("available: ")[1].split(")")[0]
