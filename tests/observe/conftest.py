"""Fixtures for the observability tests (helpers in ``bhprom_support``)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # bhprom_support, bhprom_tasks

from bhprom_support import HostProcess


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """One observed host shared by a module's tests (each test counts what
    it sends as a difference, so their order does not matter). Not wider:
    a folder without ``__init__.py`` is no package, and a host living to
    the session's end would be counted as a leftover by other tests."""
    process = HostProcess(tmp_path_factory.mktemp("observed")).start()
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
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def promtool() -> str:
    """The path of ``promtool`` (Debian's ``prometheus`` package, which
    ``.ci/run`` installs when missing); skips with the reason without it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); the exposition format is not checked")
    return path
