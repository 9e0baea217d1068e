"""The step and sequence kinds inside a real Host: config errors, step
references, request params, timeouts and lifecycle hooks."""

from __future__ import annotations

import asyncio
import tomllib

import pytest

from bridgehost import hookimpl
from bridgehost.config import parse_config
from bridgehost.errors import ConfigError
from bridgehost.host import Host
from bridgehost.jobs import Request, Status
from bridgehost.plugins import load_plugins
from bridgehost_steps.controller import StepsController
from stepkit import StepsPlugin, running_host


async def hold(context):
    try:
        await context.wait(asyncio.Event().wait())
    finally:
        context.send_location({"cleaned": True})


def build(text: str, tmp_path=None) -> Host:
    plugins = load_plugins(load=["steps"], extra=[("teststeps", StepsPlugin({"hold": hold}))])
    source = str(tmp_path / "rig.toml") if tmp_path else "rig.toml"
    return Host(parse_config(tomllib.loads(text), plugins, source=source), plugins)


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ('kind = "step"\ntarget = "nosuch"', "tasks[0].target", ["step 'nosuch' is not available (available: delay, hold)",
                                                          "no installed distribution provides it"]),
        ('kind = "step"\ntarget = "json:nosuch"', "tasks[0].target", ["AttributeError"]),
        ('kind = "step"\ntarget = "time:time"', "tasks[0].target", ["takes (context) or (data, context)"]),
        ('kind = "step"\ntarget = "delay"\ndata = { seconds = -1 }', "tasks[0].data", [">= 0"]),
        ('kind = "step"\ntarget = "hold"\ncontrol_transport = "pva"', "tasks[0].control_transport", ["no transport named 'pva'"]),
        ('kind = "sequence"\nsteps = ["hold", "hold"]', "tasks[0].steps[1].name", ["already used by steps[0]"]),
        ('kind = "sequence"\nsteps = []', "tasks[0].steps", ["length >= 1"]),
        ('kind = "sequence"\nsteps = [{ step = "hold", nmae = "x" }]', "tasks[0].steps[0].nmae", ["unknown key"]),
    ],
)
def test_config_errors_name_the_key_and_the_fix(table, key, words):
    with pytest.raises(ConfigError) as info:
        build(f'[[tasks]]\nname = "t"\n{table}\n')
    assert info.value.key == key
    for word in words:
        assert word in str(info.value)


def test_a_step_from_a_file_next_to_the_config(tmp_path):
    (tmp_path / "lab.py").write_text("async def weigh(data, context):\n    return {'grams': data['grams']}\n")
    text = '[[tasks]]\nname = "w"\nkind = "sequence"\nsteps = [{ step = "lab.py:weigh", data = { grams = 3 } }]\n'

    async def scenario():
        async with running_host(text, source=tmp_path / "rig.toml") as (host, _, _seen):
            outcome = await host.submit(Request(task="w"))
            assert outcome.status is Status.SUCCESS, outcome.error
            assert outcome.data["results"] == {"weigh": {"grams": 3}}
            again = await host.submit(Request(task="w", params={"data": {"weigh": {"grams": 5}}}))
            assert again.data["results"] == {"weigh": {"grams": 5}}

    asyncio.run(scenario())


def test_bad_request_params_are_rejected_before_anything_runs():
    text = '[[tasks]]\nname = "d"\nkind = "step"\ntarget = "delay"\n'

    async def scenario():
        async with running_host(text) as (host, _, seen):
            for params, words in [
                ({}, "data of step 'delay'"),
                ({"data": {"seconds": "x"}}, "Expected `float`"),
                ({"dta": {}}, "unknown field `dta`"),
            ]:
                outcome = await host.submit(Request(task="d", params=params))
                assert outcome.status is Status.REJECTED and words in outcome.error
            assert seen == []

    asyncio.run(scenario())


def test_timeout_halts_the_process_runs_its_cleanup_and_ends_timeout():
    text = '[[tasks]]\nname = "h"\nkind = "step"\ntarget = "hold"\ntimeout_s = 0.2\n'

    async def scenario():
        async with running_host(text, steps={"hold": hold}) as (host, controller, seen):
            outcome = await host.submit(Request(task="h", id="t1"))
            assert outcome.status is Status.TIMEOUT
            status = controller.status("t1")
            assert status.state == "halted" and status.location == {"cleaned": True}
            assert seen[-1].topic == "steps.state" and seen[-1].data["state"] == "halted"

    asyncio.run(scenario())


def test_lifecycle_hooks_see_every_announcement_as_a_job_event():
    events = []

    class Recorder:
        @hookimpl
        def job_event(self, job, event):
            events.append((event.seq, event.kind.value, event.data["topic"]))

    text = '[[tasks]]\nname = "d"\nkind = "step"\ntarget = "delay"\ndata = { seconds = 0.01 }\n'

    async def scenario():
        plugins = load_plugins(load=["steps"], extra=[("recorder", Recorder())])
        host = Host(parse_config(tomllib.loads(text), plugins), plugins)
        await host.start()
        try:
            assert (await host.submit(Request(task="d"))).status is Status.SUCCESS
        finally:
            await host.stop()

    asyncio.run(scenario())
    assert [e[0] for e in events] == list(range(1, len(events) + 1))
    assert events[0][1:] == ("progress", "state") and events[-1][1:] == ("progress", "state")
    assert {"location", "duration"} <= {e[1] for e in events}


def test_start_through_the_controller_goes_through_the_lane_and_reports_queued_and_busy():
    text = (
        '[[tasks]]\nname = "h"\nkind = "step"\ntarget = "hold"\nconcurrency = 1\nqueue_size = 1\n'
    )

    async def scenario():
        async with running_host(text, steps={"hold": hold}) as (_, controller, _):
            first, f1 = controller.start("h", job_id="a")
            second, f2 = controller.start("h", job_id="b")
            third, f3 = controller.start("h", job_id="c")
            assert (first.state, second.state) == ("running", "queued")
            assert not third.accepted and "busy" in third.reason
            assert (await f3).status is Status.BUSY
            await asyncio.sleep(0.01)
            refused = controller.pause("b")
            assert not refused.accepted and "queued" in refused.reason
            assert controller.halt("a").accepted
            assert (await f1).status is Status.CANCELLED
            await asyncio.sleep(0.01)
            assert controller.halt("b").accepted
            assert (await f2).status is Status.CANCELLED

    asyncio.run(scenario())


def test_the_controller_is_the_host_s_plugin_state_and_nothing_is_set_on_the_transport():
    """Issue 11 item 2: a typed per-plugin state slot instead of attributes on
    the transport and a module-level WeakKeyDictionary."""
    text = """
[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:*"

[[tasks]]
name = "h"
kind = "step"
target = "hold"

[[tasks]]
name = "h2"
kind = "step"
target = "hold"
"""

    async def scenario():
        async with running_host(text, steps={"hold": hold}) as (host, controller, _seen):
            transport = host.transports["zmq"]
            assert controller is StepsController.of(host) is host.plugin_state(StepsController)
            assert controller.routed == [transport]  # two steps tasks, routed once
            assert not [name for name in vars(transport) if "steps" in name]
            assert not [name for name in vars(host.plugins) if "steps" in name]
        other = build('[[tasks]]\nname = "h"\nkind = "step"\ntarget = "hold"\n')
        assert StepsController.of(other) is not controller

    asyncio.run(scenario())
