"""The `bridgehost` command against a running host and the shipped example."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridgehost_analysis.traction import SCRIPT

EXAMPLE = Path(__file__).parents[2] / "examples" / "traction" / "traction.toml"

def bridgehost(*args):
    return subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_call_prints_the_response_and_exits_by_its_success(start_host, deployment, traction_run, tmp_path):
    template = deployment()
    host = start_host(template)
    ok = bridgehost("call", "python.run_analysis", json.dumps(traction_run.request(SCRIPT)), "--endpoint", host.endpoint)
    assert ok.returncode == 0, ok.stderr
    response = json.loads(ok.stdout)
    assert response["success"] is True and response["message_type"] == "response"
    assert set(response["data"]) == {"max_force", "avg_force"}

    bad_script = traction_run.request("../etc/passwd.py")
    failed = bridgehost("call", "python.run_analysis", json.dumps(bad_script), "--endpoint", host.endpoint)
    assert failed.returncode == 1
    answer = json.loads(failed.stdout)
    assert answer["success"] is False and answer["data"]["status"] == "REJECTED"

    # The endpoint can come from the deployment's own config.
    config = tmp_path / "deployed.toml"
    config.write_text(template.format(endpoint=host.endpoint, datastore=traction_run.store.root))
    ping = bridgehost("call", "host.ping", "--config", str(config))
    assert ping.returncode == 0 and json.loads(ping.stdout)["data"]["tasks"] == ["python.run_analysis"]


def test_call_refuses_data_that_is_not_json():
    result = bridgehost("call", "python.run_analysis", "{run_id: r1}", "--endpoint", "tcp://127.0.0.1:9")
    assert result.returncode == 2
    assert "DATA is not valid JSON" in result.stderr


def test_call_times_out_with_exit_1_when_no_host_answers():
    result = bridgehost("call", "host.ping", "--endpoint", "tcp://127.0.0.1:9", "--timeout", "0.3")
    assert result.returncode == 1
    assert "tcp://127.0.0.1:9" in result.stderr


def test_check_accepts_the_shipped_example():
    result = bridgehost("check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "tasks[0]: analysis 'python.run_analysis'" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["host.ping", "--timeout", "nan"], "--timeout nan is not a positive number of seconds"),
        (["host.ping", "--timeout", "inf"], "--timeout inf is not a positive number of seconds"),
        (["host.ping", "--timeout", "-1"], "--timeout -1.0 is not a positive number of seconds"),
        ([""], "TOPIC is empty"),
        (["t" * 300], "TOPIC is 300 characters long, over 256"),
    ],
    ids=["nan", "inf", "negative", "empty-topic", "long-topic"],
)
def test_call_refuses_bad_arguments_in_one_line_with_exit_2(args, words):
    result = bridgehost("call", *args, "--endpoint", "tcp://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"bridgehost call: {result.stderr.split('bridgehost call: ', 1)[1]}"
    assert words in result.stderr and result.stderr.count("\n") == 1


def test_ctrl_c_during_call_exits_130_quietly():
    with socket.socket() as s:  # a free port: nothing answers there
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgehost.cli", "call", "host.ping", "--endpoint", endpoint, "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(3)  # imported and waiting for the response (the answer never comes)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err and out == ""
