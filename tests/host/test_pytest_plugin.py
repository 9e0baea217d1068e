"""The pytest plugin bridgehost ships (entry point ``pytest11``): a plugin
author's test session gets the fixtures without any conftest. Runs pytest in
a subprocess on a test file such an author would write."""

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

AUTHOR_TESTS = '''
import sys

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


def test_a_host_without_zmq_has_no_endpoint(bridgehost_host):
    host = bridgehost_host("")
    with pytest.raises(LookupError, match="no zmq transport"):
        host.endpoint


@pytest.fixture
def without_ipc(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("bridgehost_ipc")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "bridgehost_ipc", None)  # import fails as if not installed


def test_the_client_fixture_without_bridgehost_ipc(without_ipc, bridgehost_client):
    pass
'''


def test_a_plugin_author_s_session_gets_the_fixtures(tmp_path):
    (tmp_path / "test_author.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    report = tmp_path / "report.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "--rootdir", str(tmp_path), str(tmp_path / "test_author.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    cases = {case.get("name"): case for case in ET.parse(report).iter("testcase")}
    failing = {name: [child.get("message") for child in case] for name, case in cases.items() if len(case)}
    assert set(failing) == {"test_the_client_fixture_without_bridgehost_ipc"}, result.stdout[-5000:]
    [error] = cases["test_the_client_fixture_without_bridgehost_ipc"]
    assert error.tag == "error"
    assert "the bridgehost_client fixture needs bridgehost-ipc" in error.get("message")
    assert "pip install bridgehost-ipc" in error.get("message")
    assert len(cases) == 6
