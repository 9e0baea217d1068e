"""Whole deployments: `bridgehost run` in its own process, real ZeroMQ
clients, real analysis processes."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bridgehost_analysis.traction import generate_run
from bridgehost_ipc.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningHost:
    """A `bridgehost run CONFIG` process we started, and its endpoint."""

    def __init__(self, proc: subprocess.Popen, endpoint: str, log: Path):
        self.proc = proc
        self.endpoint = endpoint
        self.log = log

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def analyses(self) -> list[psutil.Process]:
        """Descendants other than the analysis zygote and the children it
        keeps waiting for a run: what runs, or was left behind."""
        found = []
        for p in self.descendants():
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.name() not in ("bh-zygote", "bh-waiting") and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        return found

    def settled(self, within: float = 5.0) -> list[psutil.Process]:
        """``analyses()`` once it is empty, or at the end of ``within`` s:
        a child that replied may still be exiting."""
        deadline = time.monotonic() + within
        while (found := self.analyses()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return found

    def output(self) -> str:
        return self.log.read_text()


ANALYSIS_DEPLOYMENT = """
[host]
name = "rig"
shutdown_grace_s = {grace}

[[transports]]
kind = "zmq"
endpoint = "{{endpoint}}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "{{datastore}}"
timeout_s = {timeout}
concurrency = 2
queue_size = 64
"""


@pytest.fixture
def deployment():
    """The config template of a ZeroMQ + analysis deployment, for ``start_host``:
    ``deployment(grace=5, timeout=20)``."""

    def make(grace: float = 5, timeout: float = 20) -> str:
        return ANALYSIS_DEPLOYMENT.format(grace=grace, timeout=timeout)

    return make


@pytest.fixture
def traction_run(tmp_path):
    """A generated traction run in a fresh datastore (the demo's data)."""
    return generate_run(tmp_path / "datastore")


@pytest.fixture
def start_host(tmp_path):
    """Start `bridgehost run` on a config (TOML text with ``{endpoint}`` and
    ``{datastore}`` placeholders); wait until it answers host.ping.
    ``bridgehost`` is the command to run (default: this Python's), ``env``
    its environment (default: this one's)."""
    started: list[RunningHost] = []

    def start(
        config: str, datastore: Path | None = None, *, bridgehost: list | None = None, env: dict | None = None
    ) -> RunningHost:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        path = tmp_path / f"host{len(started)}.toml"
        path.write_text(config.format(endpoint=endpoint, datastore=datastore or tmp_path / "datastore"))
        log = tmp_path / f"host{len(started)}.log"
        proc = subprocess.Popen(
            [*(bridgehost or [sys.executable, "-m", "bridgehost.cli"]), "run", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        host = RunningHost(proc, endpoint, log)
        started.append(host)
        with Client(endpoint) as client:
            try:
                client.wait_ready(20, alive=lambda: proc.poll() is None)
            except (ConnectionError, TimeoutError) as e:
                raise AssertionError(f"{e} (exit code {proc.poll()}):\n{host.output()}") from None
        return host

    yield start
    for host in started:  # stop only what we started, by PID
        if host.proc.poll() is None:
            os.kill(host.proc.pid, signal.SIGKILL)
            host.proc.wait(timeout=10)
