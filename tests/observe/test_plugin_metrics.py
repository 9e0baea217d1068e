"""What the plugins declare through ``register_metrics``, read as the
prometheus transport reads it (``declared_metrics(host).read()``) on real
hosts of those plugins."""

from __future__ import annotations

import asyncio
import tomllib

from bridgehost.config import parse_config
from bridgehost.host import Host
from bridgehost.metrics import declared_metrics
from bridgehost.plugins import load_plugins

WAIT_S = 30.0


def build(text: str, *plugins: str) -> Host:
    loaded = load_plugins(load=list(plugins))
    return Host(parse_config(tomllib.loads(text), loaded, source="test.toml"), loaded)


def read(host: Host) -> dict[str, dict[tuple[str, ...], float]]:
    return {series.metric.name: series.samples for series in declared_metrics(host).read()}


async def until(condition, what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.005)


def test_steps_jobs_by_task_and_state():
    async def main():
        from bridgehost_steps.controller import StepsController

        host = build('[[tasks]]\nname = "soak"\nkind = "step"\ntarget = "delay"\ndata = { seconds = 600 }\n', "steps")
        await host.start()
        controller = StepsController.of(host)
        answer, outcome = controller.start("soak", job_id="soak-1")
        assert answer.accepted, answer.reason
        await until(lambda: "soak-1" in controller.runs, "the job runs")
        running = read(host)["bridgehost_steps_jobs"]
        assert controller.pause("soak-1").accepted
        await until(lambda: controller.runs["soak-1"].state.value == "paused", "the job is paused")
        paused = read(host)["bridgehost_steps_jobs"]
        await host.stop(grace_s=0)
        await outcome
        return running, paused, read(host)["bridgehost_steps_jobs"]

    running, paused, stopped = asyncio.run(main())
    assert running[("soak", "running")] == 1 and sum(running.values()) == 1
    assert paused[("soak", "paused")] == 1 and sum(paused.values()) == 1
    assert set(paused) == {("soak", s) for s in ("queued", "running", "pausing", "paused", "faulted", "halting")}
    assert sum(stopped.values()) == 0


SCRIPTS = {
    "ok.py": "def calculate_results(ctx):\n    return {'n': 1}\n",
    "chatty.py": "import sys\n\ndef calculate_results(ctx):\n    while True:\n        sys.stdout.write('x' * 10_000)\n        sys.stdout.flush()\n",
    "killed.py": "import os, signal\n\ndef calculate_results(ctx):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
}


def test_analysis_restarts_waiting_children_kills_and_peak_memory(tmp_path):
    import os
    import signal

    from bridgehost_analysis.datastore import Datastore

    store = Datastore(tmp_path / "datastore")
    store.scripts_dir.mkdir(parents=True)
    for name, source in SCRIPTS.items():
        (store.scripts_dir / name).write_text(source)
    run = store.run("p", "d", "r1")
    run.save(project={}, configuration={})
    config = f'[[tasks]]\nname = "calc"\nkind = "analysis"\ndatastore = "{store.root}"\noutput_kill_bytes = 10000\n'

    async def main():
        from bridgehost.jobs import Request

        host = build(config, "analysis")
        await host.start()
        runner = host.lanes["calc"].impl.runner
        try:
            for script in ("ok.py", "chatty.py", "killed.py"):
                await host.submit(Request(task="calc", params=run.request(script)))
            await until(lambda: runner.zygote.max_rss_kb > 0, "a run's exit is reported")
            before = read(host)
            os.kill(runner.zygote.pid, signal.SIGKILL)  # the zygote this test's host started
            await until(lambda: not runner.zygote.alive, "the host sees the zygote die")
            outcome = await host.submit(Request(task="calc", params=run.request("ok.py")))
            assert outcome.ok, outcome.error
            return before, read(host)
        finally:
            await host.stop()

    before, after = asyncio.run(main())
    killed = before["bridgehost_analysis_runs_killed_total"]
    assert killed[("calc", "too_much_output")] == 1 and killed[("calc", "signal")] == 1 and sum(killed.values()) == 2
    assert before["bridgehost_analysis_waiting_children"][("calc",)] >= 1
    assert before["bridgehost_analysis_child_max_rss_bytes"][("calc",)] > 1_000_000
    assert before["bridgehost_analysis_zygote_restarts_total"] == {("calc",): 0}
    assert after["bridgehost_analysis_zygote_restarts_total"] == {("calc",): 1}
    assert after["bridgehost_analysis_child_max_rss_bytes"][("calc",)] >= before["bridgehost_analysis_child_max_rss_bytes"][("calc",)]
