"""Helpers of the observability tests: a real ``bridgehost run`` process
with the ``zmq`` and ``prometheus`` transports on free loopback ports,
stopped by its PID; its /metrics read over real HTTP."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridgehost.testing import free_endpoint
from bridgehost_ipc.client import Client

HERE = Path(__file__).parent
WAIT_S = 30.0
"""Bound on a start, a stop or a wait: reached only when a test fails."""

CONFIG = """\
[host]
name = "observed-rig"
shutdown_grace_s = {grace}

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[transports]]
kind = "prometheus"
listen = "{listen}"
{prometheus}

[[triggers]]
kind = "zmq"

[[tasks]]
name = "rig.copy"
kind = "callable"
target = "copy:copy"

[[tasks]]
name = "rig.interlock"
kind = "callable"
target = "bhprom_tasks:interlock"

[[tasks]]
name = "rig.hold"
kind = "callable"
target = "bhprom_tasks:hold"
concurrency = 2
queue_size = 1
"""


class HostProcess:
    """``bridgehost run`` on a generated config in ``folder``; stopped by PID only."""

    def __init__(
        self, folder: Path, *, listen: str = "127.0.0.1:0", grace: float = 5.0, extra: str = "", prometheus: str = ""
    ):
        self.folder = folder
        self.endpoint = free_endpoint()
        self.config = folder / "host.toml"
        self.config.write_text(CONFIG.format(endpoint=self.endpoint, listen=listen, grace=grace, prometheus=prometheus) + extra)
        self.log = folder / "host.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HostProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridgehost.cli", "run", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            env=host_env(),
        )
        with self.client() as client:
            try:
                client.wait_ready(WAIT_S, alive=self.alive)
            except (ConnectionError, TimeoutError) as e:
                raise AssertionError(f"{e} (exit code {self.proc.poll()}):\n{self.output()}") from None
        return self

    def client(self) -> Client:
        return Client(self.endpoint)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(self, topic: str, data: dict | None = None):
        with self.client() as client:
            return client.call(topic, data or {}, timeout_s=WAIT_S)

    @property
    def metrics_address(self) -> tuple[str, int]:
        """Where /metrics is served, from the host's log line."""
        for line in self.output().splitlines():
            if "serving http://" in line:
                hostport = line.split("serving http://", 1)[1].split("/", 1)[0]
                host, _, port = hostport.rpartition(":")
                return host.strip("[]"), int(port)
        raise AssertionError(f"the host logged no 'serving http://' line:\n{self.output()}")

    def scrape(self, path: str = "/metrics") -> str:
        """GET /metrics; the body, checked complete against its Content-Length."""
        status, headers, body = http_get(*self.metrics_address, path)
        assert status == 200, body
        assert int(headers["content-length"]) == len(body)
        return body.decode()

    def terminate(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within WAIT_S; its return code."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=WAIT_S)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def host_env() -> dict[str, str]:
    """The environment of a host process: this folder on its sys.path (``bhprom_tasks``)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def run_cli(*args: str, timeout_s: float = 2 * WAIT_S, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``bridgehost ARGS...`` to its end, in a host's environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**host_env(), **(env or {})},
    )


def http_get(host: str, port: int, path: str = "/metrics") -> tuple[int, dict[str, str], bytes]:
    """One HTTP GET; raises ``http.client.IncompleteRead`` for a body shorter
    than its Content-Length (half a page), ``ConnectionError`` or
    ``http.client.RemoteDisconnected`` for a refused or closed connection."""
    conn = http.client.HTTPConnection(host, port, timeout=WAIT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def wait_until(condition, what: str, within: float = WAIT_S) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)

