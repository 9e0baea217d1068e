"""The plugin's step, run by the step runtime. Runs only where
bridgehost-steps is installed (pip install 'bridgehost-plugin-template[steps]')."""

import pytest

pytest.importorskip(
    "bridgehost_steps",
    reason="the step runtime is not installed: pip install 'bridgehost-plugin-template[steps]'",
)

from bridgehost.jobs import Status  # noqa: E402

CONFIG = """
[[tasks]]
name = "rig.ramp"
kind = "step"
step = "template.ramp"
timeout_s = 30
"""


def test_the_ramp_runs_to_its_target(bridgehost_host):
    host = bridgehost_host(CONFIG)
    outcome = host.call("rig.ramp", {"target": 50.0, "steps": 5, "dwell_s": 0.0})
    assert outcome.status is Status.SUCCESS, outcome.error
    assert outcome.data == {"setpoint": 50.0, "steps": 5}
