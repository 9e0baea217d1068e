"""Fixtures for the hostile tests: one real ``bridgehost run`` process per
module (starting it is the slow part), stopped by its PID at the end."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the harness, shared with bench/reliability.py

from harness import HostProcess, prepare_datastore


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def host(module_dir: Path) -> Iterator[HostProcess]:
    """A started host with the hostile tasks on a free loopback port."""
    process = HostProcess(module_dir)
    prepare_datastore(process.store)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator:
    """``start_host(**HostProcess options)``: a host of this test only."""
    started: list[HostProcess] = []

    def start(**options) -> HostProcess:
        folder = tmp_path / f"host{len(started)}"
        folder.mkdir()
        process = HostProcess(folder, **options)
        prepare_datastore(process.store)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
