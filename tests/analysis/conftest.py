"""Fixtures of the analysis tests: a datastore in tmp_path with one small
run, scripts written into it, and tasks run the way the host runs them
(``asyncio.wait_for`` stands in for the host's ``asyncio.timeout``)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridgehost.jobs import Job, Request
from bridgehost.testing import build_host
from bridgehost_analysis.datastore import Datastore, Run
from bridgehost_analysis.task import AnalysisTask, AnalysisTaskConfig

TASK = "python.run_analysis"


@pytest.fixture
def store(tmp_path: Path) -> Datastore:
    return Datastore(tmp_path / "datastore")


@pytest.fixture
def run(store: Datastore) -> Run:
    """A run shaped like the example ctx of AutoCore's manual, "Python Analysis Integration"."""
    run = store.run("acme", "traction", "2026-04-20T12-00-00Z")
    run.save(
        project={"customer": "ACME Corp", "operator": "John Doe"},
        configuration={"control_load": 500.0, "speed": 10.0},
        results={"test_duration_s": 45.2},
    )
    run.append_cycle({"cycle_index": 1, "actual_load": 498.2})
    run.append_cycle({"cycle_index": 2, "actual_load": 501.1})
    run.set_raw_trace(t=[0.0, 0.1, 0.2, 0.3], force=[0.0, 100.5, 200.1, 300.8])
    return run


@pytest.fixture
def script(store: Datastore) -> Callable[[str, str], str]:
    """``script(name, source)`` writes a script into ``scripts/``; returns ``name``."""

    def write(name: str, source: str) -> str:
        path = store.scripts_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture
def make_task(tmp_path: Path) -> Callable[..., AnalysisTask]:
    """``make_task(**config)``: an AnalysisTask on ``tmp_path/datastore``,
    given as a path relative to an idle host's config folder."""

    def make(**config: Any) -> AnalysisTask:
        cfg = AnalysisTaskConfig(kind="analysis", name=TASK, datastore="./datastore", **config)
        return AnalysisTask(cfg, build_host("", tmp_path, load=["analysis"])[0])

    return make


@pytest.fixture
def analyse() -> Iterator[Callable[..., Any]]:
    """``analyse(task, params, timeout=20)``: run one job as the host would;
    returns the result or raises what ``run`` raised (TimeoutError when the
    timeout cancelled it). All calls of a test share one event loop, as in a
    host; each task is started on first use and stopped at the end."""
    started: list[AnalysisTask] = []

    async def run(task: AnalysisTask, params: dict[str, Any], timeout: float) -> Any:
        if task not in started:
            await task.start()
            started.append(task)
        job = Job(Request(task=TASK, params=params))
        result = await asyncio.wait_for(task.run(job), timeout)
        return msgspec.json.decode(result)  # the child's JSON, passed on undecoded by the task

    async def stop() -> None:
        for task in started:
            await task.stop()

    with asyncio.Runner() as runner:

        def call(task: AnalysisTask, params: dict[str, Any], timeout: float = 20.0) -> Any:
            return runner.run(run(task, params, timeout))

        try:
            yield call
        finally:
            runner.run(stop())
