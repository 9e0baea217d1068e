"""What the analysis benchmarks share: a `bridgehost run` process on a free
loopback port, timed calls over ZeroMQ, and the figures of the machine.

Imported by the bench scripts beside it (``python bench/<script>.py`` puts
this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bridgehost_ipc.client import Client

ZMQ_HOST = """
[host]
name = "bench"

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"
"""
"""The start of a benchmark's config: a host serving requests over ZeroMQ."""


@dataclass
class HostProcess:
    proc: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    def family(self) -> list[psutil.Process]:
        """The host process and every process under it (zygote, children)."""
        host = psutil.Process(self.proc.pid)
        return [host, *host.children(recursive=True)]


@contextlib.contextmanager
def running_host(folder: Path, config: str) -> Iterator[HostProcess]:
    """Run ``bridgehost run`` on ``config`` (TOML, ``{endpoint}`` filled in)
    from ``folder`` (also put on its PYTHONPATH); wait until it answers
    ``host.ping``. On exit: SIGTERM, wait, and fail if any process it had
    started is still alive."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    (folder / "bench.toml").write_text(config.replace("{endpoint}", endpoint))
    log = folder / "host.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgehost.cli", "run", str(folder / "bench.toml")],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))},
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    host = HostProcess(proc, endpoint, log)
    family: list[psutil.Process] = []
    try:
        _wait_ready(host)
        yield host
        family = host.family()
    finally:
        stop(proc)
    _, alive = psutil.wait_procs(family, timeout=10)
    if alive:
        raise SystemExit(f"processes left running after the host stopped: {alive}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a ``bridgehost run`` this benchmark started, by PID: SIGTERM (so
    it stops its components and their processes), SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(host: HostProcess) -> None:
    with Client(host.endpoint) as client:
        try:
            client.wait_ready(60, alive=lambda: host.proc.poll() is None)
        except (ConnectionError, TimeoutError) as e:
            raise SystemExit(f"{e}:\n{host.log.read_text()}") from None


def timed_calls(endpoint: str, topic: str, data: dict, count: int, *, fail: bool = False) -> list[float]:
    """Call ``topic`` ``count`` times in a row; the round trips in seconds.
    A call that does not succeed (or with ``fail``, one that does) ends the
    benchmark with its error."""
    times = []
    with Client(endpoint) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.call(topic, data, timeout_s=120)
            times.append(time.perf_counter() - started)
            if response.success == fail:
                raise SystemExit(f"{topic} {'succeeded' if fail else 'failed'}: {response.error_message}")
    return times


def ms(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 of ``seconds``, in milliseconds."""
    values = sorted(x * 1000 for x in seconds)
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
        "max_ms": round(values[-1], 2),
    }


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on the machine."""
    return [round(x, 2) for x in os.getloadavg()]
