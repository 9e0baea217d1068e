"""``Host.status()`` and the metrics API (``bridgehost.metrics``): what an
operator reads of a running host, counted where every job ends."""

import asyncio
import logging

import msgspec
import pytest

from bridgehost import hookimpl
from bridgehost.jobs import Request
from bridgehost.metrics import Metrics, declared_metrics

run = asyncio.run

TASKS = """
[host]
name = "rig-7"

[[tasks]]
name = "held"
kind = "callable"
target = "targets:held"
concurrency = 1
queue_size = 1

[[tasks]]
name = "fail"
kind = "callable"
target = "targets:fail"
"""


def test_status_counts_running_queued_finished_failures_and_refusals(make_host, targets):
    async def main():
        targets.gate = asyncio.Event()
        host = make_host(TASKS)
        assert host.status().state == "new"
        await host.start()
        held = [host.submit(Request(task="held", params={"n": n}, source="pytest", ref="7")) for n in range(3)]
        await host.submit(Request(task="fail", params={"as": "task"}))
        await host.submit(Request(task="nope"))
        await asyncio.sleep(0)
        during = host.status()
        targets.gate.set()
        await asyncio.gather(*held)
        after = host.status()
        await host.stop()
        return during, after, host.status()

    during, after, stopped = run(main())
    tasks = {t.name: t for t in during.tasks}
    assert (tasks["held"].running, tasks["held"].queued, tasks["held"].concurrency) == (1, 1, 1)
    assert tasks["held"].finished == {"BUSY": 1}
    assert tasks["fail"].finished == {"TASK_FAIL": 1}
    [job] = during.running
    assert (job.task, job.source, job.ref) == ("held", "pytest", "7") and job.elapsed_s >= 0
    assert [(f.task, f.status) for f in during.failures] == [("held", "BUSY"), ("fail", "TASK_FAIL"), ("nope", "REJECTED")]
    assert during.failures[1].error == "raised TaskFailed"
    assert during.refused == {"queue_full": 1, "unknown_task": 1}
    assert (during.name, during.state) == ("rig-7", "running") and during.uptime_s > 0
    assert {t.name: t.finished for t in after.tasks}["held"] == {"SUCCESS": 2, "BUSY": 1}
    assert after.running == []
    assert stopped.state == "stopped"
    # what host.status sends: plain JSON
    assert msgspec.json.decode(msgspec.json.encode(after))["tasks"][0]["name"] == "fail"


def test_metrics_are_declared_and_read_with_equal_names_added(make_host, caplog):
    class Declares:
        def __init__(self, value):
            self.value = value

        @hookimpl
        def register_metrics(self, metrics, host):
            metrics.counter(
                "bridgehost_requests_refused_total", "refusals", labels=("cause",),
                collect=lambda: [(("in_flight_limit",), self.value)],
            )
            metrics.gauge("acme_broken", "raises", collect=lambda: 1 / 0)

    async def main():
        host = make_host(TASKS, ("one", Declares(2)), ("two", Declares(3)))
        await host.start()
        await host.submit(Request(task="fail", params={"as": "task"}))
        for _ in range(3):  # the lane forgets an ended job in its task's done callback, just after the outcome
            await asyncio.sleep(0)
        read = {s.metric.name: s.samples for s in declared_metrics(host).read()}
        await host.stop()
        return read

    with caplog.at_level(logging.ERROR):
        read = run(main())
    assert read["bridgehost_requests_refused_total"][("in_flight_limit",)] == 5
    assert read["bridgehost_jobs_total"][("fail", "TASK_FAIL")] == 1
    assert read["bridgehost_jobs_running"] == {("fail",): 0, ("held",): 0}
    assert read["acme_broken"] == {}
    assert "metric 'acme_broken' of plugin 'one': collect() failed" in caplog.text


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda m: m.counter("acme_count", "", collect=list), "a counter's name ends in '_total'"),
        (lambda m: m.gauge("acme-x", "", collect=list), "is not [a-zA-Z_:]"),
        (lambda m: m.gauge("acme_x", "", labels=("le-x",), collect=list), "label 'le-x'"),
        (lambda m: (m.gauge("acme_x", "", collect=list), m.counter("acme_x_total", "", collect=list),
                    m.gauge("acme_x", "", labels=("a",), collect=list)), "declared it a gauge with labels ()"),
    ],
)
def test_a_malformed_declaration_is_refused(declare, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        declare(Metrics())
