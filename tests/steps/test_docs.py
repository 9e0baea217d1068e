"""docs/steps.md states the state machine the code runs, and the refusals a
client receives, word for word."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridgehost_ipc.client import Client
from bridgehost_steps import PauseRequest
from bridgehost_steps.control import _SHAPES
from bridgehost_steps.machine import FINAL, REFUSALS, TRANSITIONS, Control, ProcessEvent, State
from stepkit import WAIT_S, HostThread, wait_for

DOC = (Path(__file__).parents[2] / "docs" / "steps.md").read_text()


def test_the_documented_transition_table_is_the_code_s():
    rows = re.findall(r"^\| `([a-z]+)` \| `([a-z-]+)` \| `([a-z]+)` \|$", DOC, re.MULTILINE)
    assert len(rows) == len(set(rows))
    assert set(rows) == {(s.value, e.value, n.value) for (s, e), n in TRANSITIONS.items()}


def test_every_process_event_and_topic_is_documented():
    for event in ProcessEvent:
        assert f"| `{event.value}` |" in DOC
    for name in _SHAPES:
        assert f"`steps.{name}`" in DOC


def documented_refusals() -> dict[tuple[State, Control], str]:
    """The REFUSALS table of docs/steps.md, one entry per (state, control)."""
    table = DOC.split("| state | refused | reason |\n| --- | --- | --- |\n")[1].split("\n\n")[0]
    refusals: dict[tuple[State, Control], str] = {}
    for line in table.splitlines():
        states_cell, controls_cell, reason = (cell.strip() for cell in line.strip("|").split("|"))
        states = sorted(FINAL) if states_cell == "final" else [State(s) for s in re.findall(r"`([a-z]+)`", states_cell)]
        controls = list(Control) if controls_cell == "all" else [Control(c) for c in controls_cell.split(", ")]
        for state in states:
            for control in controls:
                assert (state, control) not in refusals, f"{state}/{control} is in two rows"
                refusals[(state, control)] = reason.replace("*state*", state.value)
    return refusals


def test_the_documented_refusals_are_the_code_s():
    assert documented_refusals() == REFUSALS


# -- the refusals a client receives over ZeroMQ ---------------------------------

CONFIG = """
[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:*"

[[tasks]]
name = "idle"
kind = "step"
target = "idle"
concurrency = 2

[[tasks]]
name = "outside"
kind = "step"
target = "outside"

[[tasks]]
name = "soak"
kind = "step"
target = "soak"

[[tasks]]
name = "fails"
kind = "step"
target = "fails"
concurrency = 2

[[tasks]]
name = "expires"
kind = "step"
target = "fails"
recovery_timeout_s = 0.01

[[tasks]]
name = "stuck"
kind = "step"
target = "stuck"

[[tasks]]
name = "quick"
kind = "step"
target = "quick"
"""

RELEASE = asyncio.Event()


async def idle(context):
    """Not pausable; waits in wait() until halted."""
    await context.wait(asyncio.Event().wait())


async def outside(context):
    """Pausable, but never reaches a checkpoint: a pause stays pending."""
    context.pausable = True
    await asyncio.Event().wait()


async def soak(context):
    context.pausable = True
    while True:
        try:
            await context.wait(asyncio.Event().wait())
        except PauseRequest:
            await context.checkpoint()


async def fails(context):
    raise RuntimeError("fails")


async def stuck(context):
    """Its cleanup waits for RELEASE: halted, it stays halting."""
    try:
        await asyncio.Event().wait()
    finally:
        await RELEASE.wait()


async def quick(context):
    return 1


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[HostThread, Client]]:
    steps = {"idle": idle, "outside": outside, "soak": soak, "fails": fails, "stuck": stuck, "quick": quick}
    host = HostThread(CONFIG, steps=steps)
    with Client(host.endpoint) as client:
        yield host, client
        host.call(RELEASE.set)
        for job in call(client, "steps.list").data["jobs"]:  # so the host stops without waiting out its grace
            call(client, "steps.halt", {"job_id": job["job_id"]})
    host.close()


def call(client: Client, topic: str, data=None):
    return client.call(topic, data, timeout_s=WAIT_S)


def job_in(client: Client, state: State) -> str:
    """Start a job and bring it to ``state`` with the client's own requests."""
    task, controls = {
        State.RUNNING: ("idle", []),
        State.PAUSING: ("outside", ["pause"]),
        State.PAUSED: ("soak", ["pause"]),
        State.FAULTED: ("fails", []),
        State.HALTING: ("stuck", ["halt"]),
        State.COMPLETED: ("quick", []),
        State.SKIPPED: ("fails", ["skip"]),
        State.HALTED: ("idle", ["halt"]),
        State.FAILED: ("expires", []),
    }[state]
    job = f"doc-{state.value}"
    assert call(client, "steps.start", {"task": task, "job_id": job}).success
    ready = "faulted" if controls == ["skip"] else "pausable" if "pause" in controls else "running"

    def reached(target: str) -> bool:
        status = call(client, "steps.status", {"job_id": job})
        return status.success and (status.data["pausable"] if target == "pausable" else status.data["state"] == target)

    if controls:
        wait_for(lambda: reached(ready), f"{job} {ready}")
    for control in controls:
        assert call(client, f"steps.{control}", {"job_id": job}).success
    wait_for(lambda: reached(state.value), f"{job} {state.value}")
    return job


def test_a_client_receives_each_documented_refusal_word_for_word(rig):
    """Issue 13 item 16: the texts of docs/steps.md, as ZeroMQ replies carry
    them (an ended job is answered by the controller, not by its run)."""
    _host, client = rig
    refusals = documented_refusals()
    received = {}
    for state in State:
        controls = [c for (s, c) in refusals if s is state]
        if not controls:
            continue
        job = job_in(client, state)
        for control in controls:
            extra = {"point": None} if control is Control.JUMP else {"data": None} if control is Control.SWAP else {}
            reply = call(client, f"steps.{control.value}", {"job_id": job, **extra})
            assert not reply.success and reply.data["status"] == "REJECTED", (state, control)
            received[(state, control)] = reply.error_message
    assert received == refusals
