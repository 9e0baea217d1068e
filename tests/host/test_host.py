"""The host's runtime: dispatch, statuses, BUSY, lifecycle hooks, shutdown."""

import asyncio
import gc
import threading
import time

import pytest

from bridgehost import hookimpl
from bridgehost.errors import ConfigError
from bridgehost.host import HostState, StartError
from bridgehost.jobs import Request, Status

run = asyncio.run


def task(name, target, **extra):
    lines = [f'[[tasks]]\nname = "{name}"\nkind = "callable"\ntarget = "targets:{target}"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_status_numbers_follow_epics_bridge_task_status():
    # The TaskStatus mbbi record maps these numbers directly (epics-bridge 2.1.0, https://pypi.org/project/epics-bridge/).
    assert [(s.name, s.value) for s in Status][:5] == [
        ("SUCCESS", 0), ("TASK_FAIL", 1), ("IO_FAILURE", 2), ("CRASH", 3), ("SKIPPED", 4)
    ]
    assert {Status.TIMEOUT, Status.CANCELLED} < {s for s in Status if s.value > 4}


def test_sync_async_and_job_targets_run(make_host):
    async def main():
        host = make_host(task("echo", "echo") + task("add", "sync_add") + task("none", "no_args") + task("job", "with_job"))
        await host.start()
        echo = await host.submit(Request(task="echo", params={"x": 1}))
        add = await host.submit(Request(task="add", params={"a": 2, "b": 3}))
        none = await host.submit(Request(task="none"))
        job = await host.submit(Request(task="job", id="j1"))
        await host.stop()
        return echo, add, none, job

    echo, add, none, job = run(main())
    assert (echo.status, echo.data) == (Status.SUCCESS, {"echo": {"x": 1}})
    assert add.data == {"sum": 5}
    assert none.ok and none.data is None
    assert job.data == {"job_id": "j1"} and job.job_id == "j1"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("task", Status.TASK_FAIL), ("io", Status.IO_FAILURE), ("skip", Status.SKIPPED), ("invalid", Status.REJECTED)],
)
def test_job_errors_choose_the_status(kind, status, make_host):
    async def main():
        host = make_host(task("f", "fail"))
        await host.start()
        outcome = await host.submit(Request(task="f", params={"as": kind}))
        await host.stop()
        return outcome

    outcome = run(main())
    assert outcome.status is status
    assert outcome.error.startswith("raised ")
    assert outcome.data == {"detail": 1}


def test_crashes_timeouts_and_returned_statuses(make_host):
    async def main():
        host = make_host(
            task("boom", "boom")
            + task("exits", "exits")
            + task("sleep", "sleep", timeout_s=0.2)
            + task("status", "returns_status")
            + task("te", "raises_timeout_error", timeout_s=5)
        )
        await host.start()
        results = {
            "boom": await host.submit(Request(task="boom")),
            "exits": await host.submit(Request(task="exits")),
            "sleep": await host.submit(Request(task="sleep", params={"s": 30})),
            "skipped": await host.submit(Request(task="status", params={"status": "SKIPPED"})),
            "te": await host.submit(Request(task="te")),
            "after": await host.submit(Request(task="sleep", params={"s": 0})),
        }
        await host.stop()
        return results

    r = run(main())
    assert r["boom"].status is Status.CRASH and r["boom"].error == "RuntimeError: kaput"
    assert "kaput" in r["boom"].data["traceback"]
    assert r["exits"].status is Status.CRASH and "SystemExit" in r["exits"].error  # sys.exit never ends the host
    assert r["sleep"].status is Status.TIMEOUT and "timeout_s of 0.2 s" in r["sleep"].error
    assert r["sleep"].duration_s < 5
    assert r["skipped"].status is Status.SKIPPED
    # A TimeoutError the task itself raises is its crash, not the host's timeout.
    assert r["te"].status is Status.CRASH and "did not answer" in r["te"].error
    assert r["after"].ok


def test_unknown_task_is_rejected_naming_the_tasks(make_host):
    async def main():
        host = make_host(task("echo", "echo"))
        await host.start()
        outcome = await host.submit(Request(task="nope"))
        await host.stop()
        return outcome

    outcome = run(main())
    assert outcome.status is Status.REJECTED
    assert "no task named 'nope'" in outcome.error and "echo" in outcome.error


def test_full_queue_answers_busy_and_queued_jobs_run_in_order(make_host, targets):
    async def main():
        targets.gate = asyncio.Event()
        host = make_host(task("held", "held", concurrency=2, queue_size=3))
        await host.start()
        futures = [host.submit(Request(task="held", params={"n": n})) for n in range(7)]
        await asyncio.sleep(0)
        refused = [f.result() for f in futures if f.done()]
        targets.gate.set()
        outcomes = await asyncio.gather(*futures)
        await host.stop()
        return refused, outcomes

    refused, outcomes = run(main())
    # 2 running + 3 waiting accepted; the other 2 are told at once, never left hanging.
    assert [o.status for o in refused] == [Status.BUSY, Status.BUSY]
    assert "queue of 3 is full" in refused[0].error
    assert [o.data["n"] for o in outcomes if o.ok] == [0, 1, 2, 3, 4]
    assert [o.status for o in outcomes[5:]] == [Status.BUSY, Status.BUSY]


def test_one_slow_task_does_not_make_another_busy(make_host, targets):
    async def main():
        targets.gate = asyncio.Event()
        host = make_host(task("held", "held", queue_size=0) + task("echo", "echo", queue_size=0))
        await host.start()
        blocked = host.submit(Request(task="held", params={"n": 1}))
        other = await host.submit(Request(task="echo"))
        targets.gate.set()
        await blocked
        await host.stop()
        return other

    assert run(main()).ok


def test_shutdown_answers_every_accepted_request(make_host):
    async def main():
        host = make_host(task("sleep", "sleep", queue_size=5))
        await host.start()
        finishing = host.submit(Request(task="sleep", params={"s": 0.1}))
        queued = [host.submit(Request(task="sleep", params={"s": 0.1})) for _ in range(3)]
        await asyncio.sleep(0.01)
        await host.stop(grace_s=5)
        late = await host.submit(Request(task="sleep", params={"s": 0}))
        return await finishing, await asyncio.gather(*queued), late, host.state

    finishing, queued, late, state = run(main())
    assert finishing.ok  # a running job gets its grace period and finishes
    assert all(o.status is Status.CANCELLED and "before the job started" in o.error for o in queued)
    assert late.status is Status.REJECTED and "stopped" in late.error
    assert state is HostState.STOPPED


def test_jobs_over_the_grace_period_are_cancelled_and_answered(make_host):
    async def main():
        host = make_host(task("sleep", "sleep", timeout_s=60))
        await host.start()
        future = host.submit(Request(task="sleep", params={"s": 30}))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await host.stop(grace_s=0.2)
        return await future, time.monotonic() - started

    outcome, took = run(main())
    assert outcome.status is Status.CANCELLED
    assert "while the job ran" in outcome.error
    assert took < 10


def test_lifecycle_hooks_in_order_and_isolated(make_host):
    calls = []

    class Recorder:
        @hookimpl
        def host_started(self, host):
            calls.append(("host_started", host.name))

        @hookimpl
        def job_started(self, job):
            calls.append(("job_started", job.id))

        @hookimpl
        def job_event(self, job, event):
            calls.append(("job_event", event.seq, event.kind.value, event.data))

        @hookimpl
        def job_finished(self, job, outcome):
            calls.append(("job_finished", job.id, outcome.status.name))

        @hookimpl
        def host_stopping(self, host):
            calls.append(("host_stopping", host.name))

    class Raising:
        @hookimpl
        def job_finished(self, job, outcome):
            raise RuntimeError("a plugin bug")

    async def main():
        host = make_host('[host]\nname = "rig"\n' + task("job", "with_job"), ("raising", Raising()), ("rec", Recorder()))
        await host.start()
        outcome = await host.submit(Request(task="job", id="j1"))
        await host.stop()
        return outcome

    outcome = run(main())
    assert outcome.ok  # a raising hook does not fail the job
    assert calls == [
        ("host_started", "rig"),
        ("job_started", "j1"),
        ("job_event", 1, "progress", {"fraction": 0.5}),
        ("job_finished", "j1", "SUCCESS"),
        ("host_stopping", "rig"),
    ]


def test_a_component_that_fails_to_start_stops_the_others(make_host):
    stopped = []

    class Good:
        async def start(self):
            pass

        async def stop(self):
            stopped.append("good")

    class Bad:
        async def start(self):
            raise OSError("Address already in use")

    from bridgehost.config import TransportConfig

    class Plugin:
        @hookimpl
        def register_transports(self, registry):
            registry.add("good", lambda c, h: Good(), config=TransportConfig)
            registry.add("bad", lambda c, h: Bad(), config=TransportConfig)

    host = make_host('[[transports]]\nkind = "good"\n[[transports]]\nkind = "bad"\n', ("p", Plugin()))
    with pytest.raises(StartError, match=r"transports\[1\] \(bad\): OSError: Address already in use"):
        run(host.start())
    assert stopped == ["good"]


def test_factory_field_errors_get_the_full_key_path(make_host):
    with pytest.raises(ConfigError) as info:
        make_host(task("t", "two_args"))
    assert info.value.key == "tasks[0].target"
    assert "takes 2 arguments" in info.value.message
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.target: 'targets:not_callable' is not callable"):
        make_host(task("t", "not_callable"))


def test_liveness_sees_a_blocked_loop(make_host):
    async def main():
        host = make_host(task("echo", "echo"))
        await host.start()
        seen = []
        watcher = threading.Thread(target=lambda: (time.sleep(0.8), seen.append(host.liveness.stalled_for())))
        watcher.start()
        time.sleep(1.2)  # blocks the loop, as a misbehaving plugin would
        watcher.join()
        await asyncio.sleep(0.3)
        after = host.liveness.stalled_for()
        await host.stop()
        return seen[0], after

    stalled, after = run(main())
    assert stalled > 0.3
    assert after == 0.0


def test_job_log_lines_carry_task_job_id_and_ref(make_host, caplog):
    import logging

    from bridgehost.logs import HumanFormatter

    async def main():
        host = make_host(task("boom", "boom"))
        await host.start()
        for n in range(50):  # requests may name any task: no logger may be kept per name
            await host.submit(Request(task=f"random.{n}", ref=str(n)))
        await host.submit(Request(task="boom", id="j7", source="zmq", ref="42"))
        await host.stop()

    loggers_before = len(logging.Logger.manager.loggerDict)
    with caplog.at_level(logging.INFO, logger="bridgehost"):
        run(main())
    assert len(logging.Logger.manager.loggerDict) <= loggers_before + 1
    [record] = [r for r in caplog.records if getattr(r, "job_id", None) == "j7"]
    line = HumanFormatter().format(record)
    assert " WARNING bridgehost.job: CRASH in " in line and line.endswith("RuntimeError: kaput [task='boom' job=j7 ref=42]")


def test_a_flood_of_busy_answers_is_one_log_line_with_its_count(make_host, targets, caplog):
    async def main():
        targets.gate = asyncio.Event()
        host = make_host(task("held", "held", queue_size=0))
        await host.start()
        first = host.submit(Request(task="held", params={"n": 0}))
        refused = [await host.submit(Request(task="held", params={"n": n})) for n in range(1, 501)]
        targets.gate.set()
        await first
        await host.stop()
        return refused

    with caplog.at_level("INFO", logger="bridgehost"):
        refused = run(main())
    assert {o.status for o in refused} == {Status.BUSY}
    busy_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("BUSY")]
    assert len(busy_lines) == 1, busy_lines[:3]
    assert "499 more line(s) of cause" in caplog.text  # flushed at stop: nothing goes uncounted


def test_paths_resolve_against_the_config_file_folder(tmp_path):
    from bridgehost.config import Config
    from bridgehost.host import Host
    from bridgehost.plugins import load_plugins

    host = Host(Config(source=str(tmp_path / "rig" / "host.toml")), load_plugins(load=[], kinds=()))
    assert host.path("./datastore") == tmp_path / "rig" / "datastore"
    assert host.path("/srv/data") == tmp_path.anchor / __import__("pathlib").Path("srv/data")
    assert host.path("~/keys").parts[-1] == "keys" and "~" not in str(host.path("~/keys"))


def test_each_plugin_state_class_has_one_instance_per_host(tmp_path):
    from bridgehost.config import Config
    from bridgehost.host import Host
    from bridgehost.plugins import load_plugins

    class Counters:
        def __init__(self, host):
            self.host, self.count = host, 0

    plugins = load_plugins(load=[], kinds=())
    first, second = Host(Config(), plugins), Host(Config(), plugins)
    first.plugin_state(Counters).count += 1
    assert first.plugin_state(Counters).count == 1 and first.plugin_state(Counters).host is first
    assert second.plugin_state(Counters).count == 0


def test_a_withdrawn_request_never_starts_and_ends_cancelled(make_host, targets):
    """Cancelling submit()'s future (a client that went away) withdraws a
    queued job: CANCELLED through job_finished, never run; and ``wanted``
    returning False withdraws it as it would start."""
    finished, started = [], []

    class Watch:
        @hookimpl
        def job_started(self, job):
            started.append(job.params.get("n"))

        @hookimpl
        def job_finished(self, job, outcome):
            finished.append((job.params.get("n"), outcome.status))

    async def main():
        targets.gate = asyncio.Event()
        host = make_host(task("held", "held", queue_size=4), ("watch", Watch()))
        await host.start()
        running = host.submit(Request(task="held", params={"n": 0}))
        withdrawn = host.submit(Request(task="held", params={"n": 1}))
        unwanted = host.submit(Request(task="held", params={"n": 2}), wanted=lambda: False)
        kept = host.submit(Request(task="held", params={"n": 3}), wanted=lambda: True)
        await asyncio.sleep(0)
        withdrawn.cancel()
        await asyncio.sleep(0)
        targets.gate.set()
        outcomes = await asyncio.gather(running, unwanted, kept)
        await host.stop()
        return outcomes

    outcomes = run(main())
    assert [o.status for o in outcomes] == [Status.SUCCESS, Status.CANCELLED, Status.SUCCESS]
    assert "withdrawn before it started" in outcomes[1].error
    assert sorted(finished) == [(0, Status.SUCCESS), (1, Status.CANCELLED), (2, Status.CANCELLED), (3, Status.SUCCESS)]
    assert started == [0, 3]


def test_what_start_up_made_is_frozen_out_of_the_collector(make_host):
    """After start, a full collection walks only what the host made since:
    start-up's objects (modules, plugins, clients) are in the collector's
    permanent generation (gc.freeze). A full collection over them took
    30-110 ms in a host with the EPICS plugin, every few seconds. Stop
    gives them back."""
    gc.unfreeze()
    try:
        async def main():
            host = make_host(task("echo", "echo"))
            before = gc.get_freeze_count()
            await host.start()
            frozen = gc.get_freeze_count()
            result = await host.submit(Request(task="echo", params={"x": 1}))
            await host.stop()
            return before, frozen, result, gc.get_freeze_count()

        before, frozen, result, after = run(main())
        assert before == 0 and frozen > 1000
        assert result.status is Status.SUCCESS
        assert after == 0  # given back at stop: a process may run several hosts
    finally:
        gc.unfreeze()
