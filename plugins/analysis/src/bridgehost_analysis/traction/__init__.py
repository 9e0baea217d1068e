"""A realistic traction test for demos, examples and tests.

``scripts/analyze_traction.py`` beside this file is the example script of
AutoCore's manual, "Python Analysis Integration", word for word; it is the one copy,
which ``generate_run`` installs into a datastore and which
``examples/traction/datastore/scripts`` links to.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bridgehost_analysis.datastore import Datastore, Run

SCRIPT = "analyze_traction.py"
SCRIPTS_DIR = Path(__file__).resolve().with_name("scripts")
"""The package's folder of example scripts (package data)."""


def generate_run(
    root: str | os.PathLike[str],
    *,
    project_id: str = "acme-traction",
    definition_id: str = "translational-traction",
    run_id: str = "2026-04-20T12-00-00Z",
    samples: int = 45_200,
    sample_rate_hz: float = 1000.0,
    cycles: int = 100,
    control_load: float = 500.0,
    speed: float = 10.0,
    seed: int = 20260420,
) -> Run:
    """Write a traction test run into the datastore at ``root`` and install
    ``analyze_traction.py`` in its ``scripts/``. Returns the ``Run``: its
    ``ids``, ``path``, ``store.root`` and ``request(SCRIPT)`` (the request
    data to analyse it) are what a demo needs.

    The run holds what AutoCore's control program saves: ``project``
    (customer, operator), ``configuration`` (``control_load`` in N, ``speed``
    in mm/s), ``results`` (``test_duration_s``), a cycle history of
    ``cycles`` cycles (``cycle_index`` from 1, ``actual_load`` N,
    ``actual_speed`` mm/s) and the float32 trace ``trace`` with channels
    ``t`` (s) and ``force`` (N): ``samples`` samples at ``sample_rate_hz`` of
    a rise to ``control_load``, a plateau with stick-slip ripple and sensor
    noise, and a release. Deterministic for a given ``seed``; running it
    again replaces the run's files.
    """
    store = Datastore(root)
    store.install_script(SCRIPTS_DIR / SCRIPT)
    run = store.run(project_id, definition_id, run_id)
    rng = np.random.default_rng(seed)
    t, force = traction_trace(rng, samples, sample_rate_hz, control_load, speed)
    duration_s = samples / sample_rate_hz
    run.save(
        project={"customer": "ACME Corp", "operator": "John Doe"},
        configuration={"control_load": control_load, "speed": speed},
        results={"test_duration_s": round(duration_s, 3)},
    )
    run.set_cycle_history(
        {
            "cycle_index": i,
            "actual_load": round(control_load + float(rng.normal(0, 0.004 * control_load)), 2),
            "actual_speed": round(speed + float(rng.normal(0, 0.005 * speed)), 3),
        }
        for i in range(1, cycles + 1)
    )
    run.set_raw_trace("trace", t=t, force=force)
    return run


def traction_trace(
    rng: np.random.Generator, samples: int, sample_rate_hz: float, control_load: float, speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(t, force)`` as float32 arrays of ``samples`` values: 2 % idle, 12 %
    smooth rise, plateau, 6 % release, 2 % idle (fractions of the duration)."""
    t = np.arange(samples, dtype=np.float64) / sample_rate_hz
    x = np.linspace(0.0, 1.0, samples)
    rise = np.clip((x - 0.02) / 0.12, 0.0, 1.0)
    fall = np.clip((x - 0.90) / 0.06, 0.0, 1.0)
    # Half-cosine ramps: a servo does not step the load.
    envelope = 0.5 * (1 - np.cos(np.pi * rise)) * 0.5 * (1 + np.cos(np.pi * fall))
    # Stick-slip ripple whose frequency follows the sliding speed, only under load.
    ripple = 0.01 * control_load * np.sin(2 * np.pi * (0.05 * speed) * t) * envelope
    noise = rng.normal(0.0, 0.004 * control_load, samples)  # load-cell noise, also when idle
    force = control_load * envelope + ripple + noise
    return t.astype(np.float32), force.astype(np.float32)
