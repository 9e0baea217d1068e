"""The shipped systemd deployment: `bridgehost run examples/systemd/rig.toml`
under a local NOTIFY_SOCKET behaves as systemd expects of a Type=notify
service with WatchdogSec, and the unit file matches its config."""

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
import uuid
from pathlib import Path

import pytest

from bridgehost_analysis.traction import SCRIPT
from bridgehost_ipc.client import Client

from .conftest import free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "systemd"


class Listener:
    """Reads every datagram on a thread of its own, so the socket's small
    queue never fills (a full queue would drop the host's messages)."""

    def __init__(self, sock):
        self.sock = sock
        self.seen: list[dict[str, str]] = []
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:  # closed
                return
            if not data:  # shut down
                return
            with self.arrived:
                self.seen.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
                self.arrived.notify_all()

    def until(self, key: str) -> dict[str, str]:
        """The first message with ``key`` from the ones not yet returned; a
        generous bound guards against a hang."""
        with self.arrived:
            found = self.arrived.wait_for(lambda: next((m for m in self.seen[self._next:] if key in m), None), 30)
            assert found is not None, f"no {key} in {self.seen}"
            self._next = self.seen.index(found) + 1
            return found

    _next = 0


def test_the_example_notifies_ready_pings_and_stopping(traction_run, tmp_path):
    name = f"@bridgehost-e2e-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    listener = Listener(sock)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": name,
        "WATCHDOG_USEC": "2000000",  # WatchdogSec=2
        # The deployment's own file, adapted for this machine the way a container would.
        "BRIDGEHOST__TRANSPORTS__0__ENDPOINT": endpoint,
        "BRIDGEHOST__TASKS__0__DATASTORE": str(traction_run.store.root),
    }
    log = (tmp_path / "host.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgehost.cli", "run", str(EXAMPLE / "rig.toml")],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        ready = listener.until("READY")
        assert ready["MAINPID"] == str(proc.pid) and ready["STATUS"].startswith("serving 1 task(s)")
        listener.until("WATCHDOG")
        with Client(endpoint) as client:
            response = client.call("python.run_analysis", traction_run.request(SCRIPT), timeout_s=30)
        assert response.success, response.error_message
        proc.send_signal(signal.SIGTERM)
        assert listener.until("STOPPING") == {"STOPPING": "1", "STATUS": "stopping"}
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    assert sum("READY" in m for m in listener.seen) == 1


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(EXAMPLE / "bridgehost.service")
    return parser


def test_the_unit_is_type_notify_with_a_watchdog_and_outlasts_the_grace_period():
    service = unit()["Service"]
    config = tomllib.loads((EXAMPLE / "rig.toml").read_text())
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert float(service["WatchdogSec"]) > config["watchdogs"][0]["stall_tolerance_s"]
    assert [w["kind"] for w in config["watchdogs"]] == ["systemd"]
    assert float(service["TimeoutStopSec"]) > config["host"]["shutdown_grace_s"]
    assert service["ExecStart"].endswith("bin/bridgehost run /etc/bridgehost/rig.toml")


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    bridgehost = Path(sys.executable).with_name("bridgehost")
    text = (EXAMPLE / "bridgehost.service").read_text().replace("/opt/bridgehost/venv/bin/bridgehost", str(bridgehost))
    path = tmp_path / "bridgehost.service"
    path.write_text(text)
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_the_example_config_passes_bridgehost_check(tmp_path):
    env = {**os.environ, "BRIDGEHOST__TASKS__0__DATASTORE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "check", str(EXAMPLE / "rig.toml")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "watchdogs[0]: systemd" in result.stdout
