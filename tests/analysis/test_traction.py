"""The traction example: the script of AutoCore's manual, "Python Analysis Integration", the generator,
examples/traction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import numpy as np
import pytest

from bridgehost_analysis.datastore import Datastore
from bridgehost_analysis.task import AnalysisTaskConfig
from bridgehost_analysis.traction import SCRIPT, SCRIPTS_DIR, generate_run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "traction"


def test_script_is_the_manuals_word_for_word() -> None:
    """The script is the one AutoCore's manual prints ("Python Analysis
    Integration"), word for word. The manual is not in the repository: set
    AUTOCORE_MANUAL to a text copy of that page to run this test."""
    manual_path = os.environ.get("AUTOCORE_MANUAL")
    if not manual_path:
        pytest.skip("set AUTOCORE_MANUAL to a text copy of AutoCore's manual, 'Python Analysis Integration'")
    manual = Path(manual_path).read_text().splitlines()
    start = manual.index("def calculate_results(ctx):")
    end = manual.index("Triggering Analysis from the Control Program")
    ours = (SCRIPTS_DIR / SCRIPT).read_text().splitlines()
    # The copied text lost its indentation and blank lines; every word is kept.
    assert [line.strip() for line in ours if line.strip()] == [line.strip() for line in manual[start:end]]


def test_manual_script_on_a_known_trace(run, make_task, analyse) -> None:
    Datastore(run.store.root).install_script(SCRIPTS_DIR / SCRIPT)
    force = [0.0, 100.5, 200.1, 300.8]
    assert analyse(make_task(), run.request(SCRIPT)) == {"max_force": max(force), "avg_force": sum(force) / len(force)}
    run.set_raw_trace(t=[], force=[])
    assert analyse(make_task(), run.request(SCRIPT)) == {"max_force": 0.0, "avg_force": 0.0}


def test_generated_run(store, make_task, analyse) -> None:
    run = generate_run(store.root, run_id="2026-04-21T08-30-00Z")
    assert run.path == store.results_dir / "acme-traction" / "translational-traction" / "2026-04-21T08-30-00Z"
    assert (store.scripts_dir / SCRIPT).read_bytes() == (SCRIPTS_DIR / SCRIPT).read_bytes()
    trace = run.raw_trace(as_lists=False)
    t, force = trace["t"], trace["force"]
    assert t.dtype == force.dtype == np.float32 and len(t) == len(force) == 45_200
    assert t[0] == 0 and abs(t[-1] - 45.199) < 1e-3
    load = run.configuration()["control_load"]
    middle = force[len(force) // 2 - 5000 : len(force) // 2 + 5000]
    assert abs(middle.mean() - load) < 0.02 * load  # the plateau
    assert abs(force[:500].mean()) < 0.01 * load and abs(force[-500:].mean()) < 0.01 * load  # idle before and after
    cycles = run.cycle_history()
    assert [c["cycle_index"] for c in cycles] == list(range(1, 101))
    assert all(abs(c["actual_load"] - load) < 0.05 * load for c in cycles)
    assert run.project() == {"customer": "ACME Corp", "operator": "John Doe"}
    assert run.results() == {"test_duration_s": 45.2}

    out = analyse(make_task(), run.request(SCRIPT))
    values = force.tolist()  # what the script saw: Python floats of the float32 samples
    assert out == {"max_force": max(values), "avg_force": sum(values) / len(values)}


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = generate_run(tmp_path / "a", samples=2000, cycles=5)
    b = generate_run(tmp_path / "b", samples=2000, cycles=5)
    for name in ("traces/trace/force.npy", "traces/trace/t.npy", "cycle_history.jsonl"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    c = generate_run(tmp_path / "c", samples=2000, cycles=5, seed=1)
    assert (a.path / "traces/trace/force.npy").read_bytes() != (c.path / "traces/trace/force.npy").read_bytes()


def test_generate_cli_prints_the_request(tmp_path: Path) -> None:
    args = ["--datastore", str(tmp_path), "--samples", "1000", "--run-id", "r1"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "generate.py"), *args], capture_output=True, text=True, check=True, timeout=60
    )
    request = json.loads(proc.stdout)
    assert request == {
        "script": SCRIPT, "function": "calculate_results", "project_id": "acme-traction",
        "definition_id": "translational-traction", "run_id": "r1", "custom_params": {},
    }  # fmt: skip
    assert "wrote run" in proc.stderr
    assert len(Datastore(tmp_path).run("acme-traction", "translational-traction", "r1").raw_trace()["force"]) == 1000


def test_example_datastore_links_to_the_one_copy() -> None:
    scripts = EXAMPLE / "datastore" / "scripts"
    assert scripts.is_symlink() and not Path(scripts.readlink()).is_absolute()
    assert Datastore(EXAMPLE / "datastore").script_path(SCRIPT) == (SCRIPTS_DIR / SCRIPT)


def test_example_config_tasks_validate() -> None:
    raw = tomllib.loads((EXAMPLE / "traction.toml").read_text())
    (task,) = raw["tasks"]
    config = msgspec.convert(task, AnalysisTaskConfig)
    assert (config.name, config.kind, config.datastore) == ("python.run_analysis", "analysis", "./datastore")
    assert [t["kind"] for t in raw["transports"]] == ["zmq"] and [t["kind"] for t in raw["triggers"]] == ["zmq"]
