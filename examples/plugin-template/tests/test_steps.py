"""The plugin's step, run by the step runtime. Runs only where
bridgehost-steps is installed (pip install 'bridgehost-plugin-template[steps]')."""

import pytest

pytest.importorskip(
    "bridgehost_steps",
    reason="the step runtime is not installed: pip install 'bridgehost-plugin-template[steps]'",
)

from bridgehost.jobs import Status

CONFIG = """
[[tasks]]
name = "rig.ramp"
kind = "step"
target = "template.ramp"
timeout_s = 30
"""


def test_the_ramp_runs_to_its_target(bridgehost_host):
    host = bridgehost_host(CONFIG)
    outcome = host.call("rig.ramp", {"data": {"target": 50.0, "steps": 5, "dwell_s": 0.0}})
    assert outcome.status is Status.SUCCESS, outcome.error
    assert outcome.data["state"] == "completed"
    assert outcome.data["result"] == {"setpoint": 50.0, "steps": 5}
    assert outcome.data["location"] == {"index": 4, "setpoint": 50.0}


def test_the_ramp_resumes_from_a_point(bridgehost_host):
    host = bridgehost_host(CONFIG)
    outcome = host.call("rig.ramp", {"data": {"target": 10.0, "steps": 10, "dwell_s": 0.0}, "point": {"index": 8}})
    assert outcome.status is Status.SUCCESS, outcome.error
    assert outcome.data["result"] == {"setpoint": 10.0, "steps": 10}
