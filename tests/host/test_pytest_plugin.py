"""The pytest plugins the distributions ship (entry points ``pytest11``): a
plugin author's test session gets the fixtures without any conftest, each
from the distribution that owns it (the core: ``bridgehost_host``;
bridgehost-analysis: ``bridgehost_datastore``, ``bridgehost_run``;
bridgehost-ipc: ``bridgehost_client``). Runs pytest in a subprocess on a test
file such an author would write, with every plugin and with the core's
alone."""

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

AUTHOR_TESTS = '''
import pytest

from bridgehost import hookimpl
from bridgehost.config import TaskConfig
from bridgehost.errors import ConfigError
from bridgehost.jobs import Status

CONFIG = """
[host]
name = "plugin-tests"

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "force"
kind = "analysis"
datastore = "{datastore}"
analysis = "traction.max_force"
"""

TRACE = {"trace": {"t": [0.0, 0.1, 0.2], "force": [1.0, 5.0, 3.0]}}


def test_the_run_is_written_as_described(bridgehost_run, bridgehost_datastore):
    run = bridgehost_run(
        run_id="r7", configuration={"control_load": 500.0}, cycles=[{"cycle_index": 1}, {"cycle_index": 2}], traces=TRACE
    )
    ctx = run.ctx({"limit": 4})
    assert run.store.root == bridgehost_datastore.root and run.ids["run_id"] == "r7"
    assert ctx["configuration"] == {"control_load": 500.0}
    assert ctx["cycle_history"] == [{"cycle_index": 1}, {"cycle_index": 2}]
    assert ctx["raw_data"] == TRACE and ctx["custom_params"] == {"limit": 4}


def test_the_host_serves_in_process_and_over_zeromq(bridgehost_run, bridgehost_host, bridgehost_client):
    run = bridgehost_run(traces=TRACE)
    host = bridgehost_host(CONFIG)
    outcome = host.call("force", run.ids)
    assert outcome.status is Status.SUCCESS, outcome.error
    assert outcome.data == {"max_force": 5.0, "avg_force": 3.0}
    response = bridgehost_client(host).call("force", run.ids, timeout_s=60)
    assert response.success and response.data == outcome.data
    assert host.call("nope").status is Status.REJECTED


class Greeter(TaskConfig, kw_only=True):
    greeting: str


class GreetTask:
    def __init__(self, config, host):
        self.greeting = config.greeting

    async def run(self, job):
        return {"text": f"{self.greeting}, {job.params['name']}"}


class TestOnlyPlugin:
    @hookimpl
    def register_tasks(self, registry):
        registry.add("greet", GreetTask, config=Greeter)


def test_plugins_given_to_the_fixture_join_the_installed_ones(bridgehost_host):
    host = bridgehost_host(
        '[[tasks]]\\nname = "hi"\\nkind = "greet"\\ngreeting = "hello"\\n', plugins=[TestOnlyPlugin()], load=[]
    )
    assert host.call("hi", {"name": "rig"}).data == {"text": "hello, rig"}
    assert "analysis" not in host.host.plugins.infos  # load=[]: no installed plugin


def test_a_bad_config_is_a_config_error(bridgehost_host):
    with pytest.raises(ConfigError, match=r"tasks\\[0\\]\\.kind: task kind 'nope' is not available"):
        bridgehost_host('[[tasks]]\\nname = "x"\\nkind = "nope"\\n')


def test_a_host_without_zmq_has_no_client(bridgehost_host, bridgehost_client):
    with pytest.raises(LookupError, match="no zmq transport"):
        bridgehost_client(bridgehost_host(""))
'''


def run_author_tests(tmp_path, *options):
    """{test name: None if it passed, else its failure or error message}."""
    (tmp_path / "test_author.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, f"--junitxml={report}",
         "--rootdir", str(tmp_path), str(tmp_path / "test_author.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )
    cases = ET.parse(report).iter("testcase")
    return {case.get("name"): next((child.get("message") for child in case), None) for case in cases}


def test_a_plugin_author_s_session_gets_every_distribution_s_fixtures(tmp_path):
    results = run_author_tests(tmp_path)
    assert len(results) == 5
    assert results == dict.fromkeys(results), results


def test_the_core_s_fixtures_work_without_the_plugins_that_own_the_others(tmp_path):
    # As if only bridgehost were installed: the plugins' pytest11 entry points blocked.
    results = run_author_tests(tmp_path, "-p", "no:bridgehost_analysis", "-p", "no:bridgehost_ipc")
    assert results["test_plugins_given_to_the_fixture_join_the_installed_ones"] is None
    assert results["test_a_bad_config_is_a_config_error"] is None
    assert "fixture 'bridgehost_run' not found" in results["test_the_run_is_written_as_described"]
    assert "fixture 'bridgehost_client' not found" in results["test_a_host_without_zmq_has_no_client"]
