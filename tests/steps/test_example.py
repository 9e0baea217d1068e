"""examples/steps: the README's exact `bridgehost call` commands against
`bridgehost run` of the example config (on a free port)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridgehost_ipc.client import Client

EXAMPLE = Path(__file__).parents[2] / "examples" / "steps"
CONFIG = "examples/steps/prep.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_calls() -> list[list[str]]:
    """The `uv run bridgehost call ...` lines of the README, as argv lists."""
    text = (EXAMPLE / "README.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("uv run bridgehost call ")]
    return [shlex.split(line)[4:] for line in lines]


@pytest.fixture
def example_host(tmp_path):
    """`bridgehost run` on a copy of the example whose endpoint is a free port."""
    for name in ("prep.toml", "prep.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    config = tmp_path / "prep.toml"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config.write_text(re.sub(r'endpoint = "[^"]+"', f'endpoint = "{endpoint}"', config.read_text()))
    log = tmp_path / "host.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgehost.cli", "run", str(config)],
        stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        with Client(endpoint) as client:
            try:
                client.wait_ready(30, alive=lambda: proc.poll() is None)
            except (ConnectionError, TimeoutError) as e:
                raise AssertionError(f"{e}:\n{log.read_text()}") from None
        yield config, log
    finally:
        if proc.poll() is None:  # stop only what we started, by PID
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def bridgehost(argv: list[str], config: Path) -> tuple[int, dict]:
    argv = [str(config) if a == CONFIG else a for a in argv]
    done = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "call", *argv], capture_output=True, text=True, timeout=60
    )
    return done.returncode, json.loads(done.stdout)


def test_the_readme_starts_pauses_jumps_and_resumes_the_sequence(example_host):
    config, log = example_host
    calls = readme_calls()
    assert [c[2] for c in calls] == [
        "steps.start", "steps.pause", "steps.status", "steps.jump", "steps.resume", "steps.status",
    ]
    answers = []
    for argv in calls:
        code, answer = bridgehost(argv, config)
        assert code == 0, answer
        answers.append(answer["data"])
        if argv[2] == "steps.pause":  # the README's status is read once the pause took effect
            status_argv = calls[2]
            deadline = time.monotonic() + 30
            while bridgehost(status_argv, config)[1]["data"]["state"] != "paused":
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
    start, pause, status, jump, resume, _ = answers
    assert (start["job_id"], start["state"]) == ("prep-1", "running")
    assert pause["accepted"] and pause["state"] in ("pausing", "paused")
    assert (status["state"], status["step_name"]) == ("paused", "heat")
    assert status["location"]["name"] == "heat" and "phase" in status["location"]["location"]
    assert jump["detail"] == "step 'heat' is cancelled and its cleanup runs; the sequence stays paused at step 'rinse'"
    assert resume["accepted"] and resume["state"] == "running"
    deadline = time.monotonic() + 30
    while (final := bridgehost(calls[-1], config)[1]["data"])["state"] != "completed":
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert final["results"] == {"rinse": {"cycles": 2}}
    code, refused = bridgehost(calls[1], config)  # pausing an ended job
    assert code == 1 and refused["error_message"].startswith("the job has ended (completed)")
