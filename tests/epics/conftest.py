"""Fixtures of the EPICS tests: a real soft IOC and ``bridgehost run``
processes, started per test and stopped by PID (helpers in epics_support.py)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # epics_support, for the tests too

from bridgehost_epics.names import db_path
from bridgehost_epics.softioc import SoftIoc
from epics_support import HostProcess


@pytest.fixture
def ioc(tmp_path):
    """``ioc(*extra_dbs)``: a running IOC with ``bridgehost.db`` and
    ``extra_dbs`` under a unique prefix."""
    started: list[SoftIoc] = []

    def make(*extra: Path) -> SoftIoc:
        prefix = f"BH{uuid.uuid4().hex[:8].upper()}:"
        i = SoftIoc(prefix, [db_path(), *extra], tmp_path / f"ioc-{len(started)}.log")
        started.append(i)
        i.start()
        return i

    yield make
    for i in started:
        i.kill()


@pytest.fixture
def start_host(tmp_path):
    """``start_host(config_text, env)``: run bridgehost on ``config_text``
    and wait until its trigger monitors the IOC (when it has one)."""
    hosts: list[HostProcess] = []

    def start(config: str, env: dict[str, str], wait_for: str | None = "monitoring ") -> HostProcess:
        path = tmp_path / f"host-{len(hosts)}.toml"
        path.write_text(config)
        host = HostProcess(path, env, tmp_path / f"host-{len(hosts)}.log")
        hosts.append(host)
        if wait_for:
            host.wait_output(wait_for)
        return host

    yield start
    for h in hosts:
        h.stop()
