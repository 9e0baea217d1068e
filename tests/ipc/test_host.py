"""The ipc plugin inside the real bridgehost Host: loaded from its entry
point, configured from TOML tables, answering over real sockets, and
answering every request across a shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridgehost.config import parse_config
from bridgehost.errors import ConfigError
from bridgehost.host import Host, HostState
from bridgehost.plugins import load_plugins
from bridgehost_ipc.client import Client

HERE = Path(__file__).parent

TASKS = [
    {"name": "python.run_analysis", "kind": "callable", "target": "bhipc_tasks:calculate_results"},
    {"name": "rig.interlock", "kind": "callable", "target": "bhipc_tasks:interlock"},
    {"name": "rig.gated", "kind": "callable", "target": "bhipc_tasks:gated", "concurrency": 1, "queue_size": 0},
]

RUN_ANALYSIS = {
    "script": "analyze_traction.py",
    "function": "calculate_results",
    "project_id": "p1",
    "definition_id": "d1",
    "run_id": "2026-04-20T12-00-00Z",
    "raw_data": {"trace": {"t": [0.0, 0.1, 0.2, 0.3], "force": [0.0, 100.5, 200.1, 300.8]}},
    "custom_params": {},
}


@pytest.fixture
def tasks_module(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.delenv("BRIDGEHOST_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("BRIDGEHOST_DISABLE_PLUGINS", raising=False)
    import bhipc_tasks

    bhipc_tasks.GATE.clear()
    yield bhipc_tasks
    bhipc_tasks.GATE.set()


def build_host(raw):
    plugins = load_plugins(load=["ipc"])
    return Host(parse_config(raw, plugins, source="rig.toml"), plugins)


@pytest.fixture
def host(loop_thread, tasks_module):
    host = build_host(
        {
            "host": {"name": "traction-rig", "shutdown_grace_s": 30},
            "transports": [{"kind": "zmq", "endpoint": "tcp://127.0.0.1:*"}],
            "triggers": [{"kind": "zmq"}],
            "tasks": TASKS,
        }
    )
    loop_thread.run(host.start())
    yield host
    tasks_module.GATE.set()
    loop_thread.run(host.stop(), timeout=30)


@pytest.fixture
def client(host):
    with Client(host.transports["zmq"].endpoint) as client:
        yield client


def test_run_analysis_round_trip_as_autocore_does_it(client, waits):
    tid = client.send("python.run_analysis", RUN_ANALYSIS)
    response = waits.response(client, tid)  # take_response once per tick until it is there
    assert response.success, response.error_message
    assert response.data == {"max_force": 300.8, "avg_force": pytest.approx(150.35)}


def test_unknown_task_is_rejected_naming_the_tasks(client):
    response = client.call("python.run_analysys", {})
    assert (response.success, response.data["status_code"]) == (False, 8)
    assert "no task named 'python.run_analysys'" in response.error_message
    assert "python.run_analysis, rig.gated, rig.interlock" in response.error_message


def test_task_failure_reaches_the_client_with_its_status(client):
    response = client.call("rig.interlock", {})
    assert not response.success
    assert response.error_message == "interlock open: the rig door is open"
    assert response.data["status"] == "TASK_FAIL" and response.data["status_code"] == 1
    assert response.data["door"] == "open" and len(response.data["job_id"]) == 32


def test_full_queue_answers_busy(host, client, waits):
    first = client.send("rig.gated")
    waits.until(lambda: host.lanes["rig.gated"].running, "the first job runs")
    busy = client.call("rig.gated")
    assert (busy.success, busy.data["status"], busy.data["status_code"]) == (False, "BUSY", 7)
    assert client.take_response(first) is None


def test_host_ping_reports_the_real_host(client):
    data = client.call("host.ping").data
    assert data["name"] == "traction-rig"
    assert data["tasks"] == ["python.run_analysis", "rig.gated", "rig.interlock"]


def test_shutdown_answers_running_and_new_requests(host, client, loop_thread, tasks_module, waits):
    running = client.send("rig.gated")
    waits.until(lambda: host.lanes["rig.gated"].running, "the job runs")
    stopping = loop_thread.submit(host.stop())
    waits.until(lambda: host.state is HostState.STOPPING, "the host is stopping")
    # While the job drains, the transport still answers: the host refuses new work.
    late = client.call("python.run_analysis", RUN_ANALYSIS)
    assert not late.success and "stopping" in late.error_message
    tasks_module.GATE.set()
    stopping.result(10)
    assert waits.response(client, running).data == {"released": True}


def test_trigger_naming_a_missing_transport_is_a_config_error(tasks_module):
    raw = {"transports": [{"kind": "zmq", "name": "plc"}], "triggers": [{"kind": "zmq"}]}
    with pytest.raises(ConfigError) as raised:
        build_host(raw)
    assert raised.value.key == "triggers[0].transport"
    assert "no transport named 'zmq' (transports: plc)" in str(raised.value)


def test_host_process_answers_and_cancels_on_sigterm(tmp_path, waits):
    endpoint = f"ipc://{tmp_path}/rig.sock"
    config = tmp_path / "rig.toml"
    config.write_text(
        f"""
[host]
name = "traction-rig"
shutdown_grace_s = 0.2

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "python.run_analysis"
kind = "callable"
target = "bhipc_tasks:calculate_results"

[[tasks]]
name = "rig.hold"
kind = "callable"
target = "bhipc_tasks:mark_then_wait"
"""
    )
    env = {**os.environ, "PYTHONPATH": str(HERE), "BRIDGEHOST_LOAD_PLUGINS": "ipc"}
    bridgehost = Path(sys.executable).parent / "bridgehost"
    proc = subprocess.Popen([str(bridgehost), "run", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        with Client(endpoint) as client:
            # messages queue until the host binds, so the first call also waits for start-up
            assert client.call("host.ping", timeout_s=20).data["name"] == "traction-rig"
            assert client.call("python.run_analysis", RUN_ANALYSIS).data["max_force"] == 300.8
            marker = tmp_path / "running"
            held = client.send("rig.hold", {"marker": str(marker)})
            waits.until(marker.exists, "the job runs")
            proc.send_signal(signal.SIGTERM)
            response = waits.response(client, held)
        assert not response.success
        assert (response.data["status"], response.data["status_code"]) == ("CANCELLED", 6)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr, stderr


def test_docs_example_client_works_against_a_real_host(host, tmp_path):
    docs = (HERE.parents[1] / "docs" / "ipc-protocol.md").read_text()
    after_marker = docs.split("<!-- example: raw-pyzmq-client", 1)[1]
    code = after_marker.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "ping_and_analyse.py"
    script.write_text(code)
    endpoint = host.transports["zmq"].endpoint
    done = subprocess.run([sys.executable, str(script), endpoint], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "'name': 'traction-rig'" in done.stdout
    assert "results: {'max_force': 0.0, 'avg_force': 0.0}" in done.stdout
