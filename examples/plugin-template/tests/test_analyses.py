"""The plugin's analysis: as a plain function, and served by a real host
(through the plugin's entry point) with the fixtures the distributions'
pytest plugins provide: bridgehost_host (bridgehost), bridgehost_run
(bridgehost-analysis), bridgehost_client (bridgehost-ipc)."""

import pytest

from bridgehost.jobs import Status
from bridgehost.plugins import load_plugins
from bridgehost_template.analyses import force_check

TRACE = {"trace": {"t": [0.0, 0.1, 0.2, 0.3], "force": [10.0, 250.0, 180.0, 90.0]}}

CONFIG = """
[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

# A task that always runs this plugin's analysis: requests name only the run.
[[tasks]]
name = "rig.force_check"
kind = "analysis"
datastore = "{datastore}"
analysis = "template.force_check"
timeout_s = 30

# AutoCore's general task (its manual, "Python Analysis Integration"): requests name a script, or an analysis by name.
[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "{datastore}"
timeout_s = 30
"""


def test_force_check_on_a_plain_ctx():
    ctx = {"raw_data": TRACE, "configuration": {"control_load": 200.0}, "custom_params": {}}
    assert force_check(ctx) == {"peak_force": 250.0, "peak_time_s": 0.1, "limit": 240.0, "passed": False}
    ctx["custom_params"] = {"max_force_limit": 300.0}
    assert force_check(ctx)["passed"] is True


def test_force_check_edges():
    empty = {"raw_data": {}, "configuration": {"control_load": 100.0}}
    assert force_check(empty) == {"peak_force": 0.0, "peak_time_s": None, "limit": 120.0, "passed": True}
    with pytest.raises(ValueError, match="no limit"):
        force_check({"raw_data": TRACE, "configuration": {}})
    with pytest.raises(ValueError, match="differ in length"):
        force_check({"raw_data": {"trace": {"t": [0.0], "force": [1.0, 2.0]}}, "custom_params": {"max_force_limit": 1}})


def test_the_installed_plugin_registers_its_analysis():
    info = load_plugins().infos["template"]
    assert info.error is None and info.distribution == "bridgehost-plugin-template"
    assert info.kinds["analysis"] == ["template.force_check"]


def test_a_host_runs_it_for_a_run_you_describe(bridgehost_run, bridgehost_host):
    run = bridgehost_run(configuration={"control_load": 200.0}, traces=TRACE)
    host = bridgehost_host(CONFIG)
    outcome = host.call("rig.force_check", run.ids)
    assert outcome.status is Status.SUCCESS, outcome.error
    assert outcome.data == {"peak_force": 250.0, "peak_time_s": 0.1, "limit": 240.0, "passed": False}


def test_a_control_program_names_it_over_zeromq(bridgehost_run, bridgehost_host, bridgehost_client):
    run = bridgehost_run(configuration={"control_load": 200.0}, traces=TRACE)
    client = bridgehost_client(bridgehost_host(CONFIG))
    request = {"analysis": "template.force_check", **run.ids, "custom_params": {"max_force_limit": 300.0}}
    response = client.call("python.run_analysis", request, timeout_s=60)
    assert response.success, response.error_message
    assert response.data["passed"] is True and response.data["limit"] == 300.0


def test_a_run_without_a_limit_fails_with_the_reason(bridgehost_run, bridgehost_host):
    run = bridgehost_run(traces=TRACE)  # no control_load saved
    outcome = bridgehost_host(CONFIG).call("rig.force_check", run.ids)
    assert outcome.status is Status.CRASH
    assert "ValueError: no limit" in outcome.error and "analyses.py" in outcome.data["traceback"]
