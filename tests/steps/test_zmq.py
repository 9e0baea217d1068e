"""Control over a real ZeroMQ socket: the steps.* topics on a host's zmq
transport, and the broadcasts a client sees."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bridgehost_ipc.client import Client
from bridgehost_steps import PauseRequest
from stepkit import WAIT_S, HostThread, wait_for

CONFIG = """
[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:*"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "prep"
kind = "sequence"
timeout_s = 60
steps = [
    { step = "delay", name = "heat", data = { seconds = 30 } },
    { step = "gated", name = "hold" },
    { step = "delay", name = "rinse", data = { seconds = 0.05 } },
]

[[tasks]]
name = "stubborn"
kind = "step"
target = "stubborn"
timeout_s = 60

[[tasks]]
name = "deaf"
kind = "step"
target = "stubborn"
timeout_s = 60
inbox_size = 2

[[tasks]]
name = "soak"
kind = "step"
target = "delay"
data = { seconds = 30 }
timeout_s = 60

[[tasks]]
name = "plain"
kind = "callable"
target = "json:dumps"
"""


async def gated(context):
    """Pausable; waits for a message (``steps.send``), then returns it."""
    context.pausable = True
    while True:
        try:
            return await context.receive()
        except PauseRequest:
            await context.checkpoint()


async def stubborn(context):
    """Not pausable; waits until halted."""
    await context.wait(asyncio.Event().wait())


@pytest.fixture(scope="module")
def rig() -> Iterator[HostThread]:
    host = HostThread(CONFIG, steps={"gated": gated, "stubborn": stubborn})
    yield host
    host.close()


@pytest.fixture
def client(rig: HostThread) -> Iterator[Client]:
    with Client(rig.endpoint) as c:
        yield c


def call(client: Client, topic: str, data=None):
    return client.call(topic, data, timeout_s=WAIT_S)


def states_of(broadcasts, job_id):
    return [b.data["state"] for b in broadcasts if b.topic == "steps.state" and b.data["job_id"] == job_id]


def test_start_pause_jump_resume_over_zmq_with_gapless_broadcasts(client):
    call(client, "host.ping")  # the host now knows this peer: it gets broadcasts
    started = call(client, "steps.start", {"task": "prep", "job_id": "z1"})
    assert started.success and started.data["job_id"] == "z1"
    wait_for(lambda: call(client, "steps.status", {"job_id": "z1"}).data["pausable"], "heat is pausable")

    paused = call(client, "steps.pause", {"job_id": "z1"})
    assert (paused.success, paused.data["accepted"], paused.data["state"]) == (True, True, "pausing")
    status = wait_for(
        lambda: (s := call(client, "steps.status", {"job_id": "z1"}).data)["state"] == "paused" and s, "paused"
    )
    assert status["step_name"] == "heat" and status["location"]["name"] == "heat"

    jumped = call(client, "steps.jump", {"job_id": "z1", "point": {"step": "hold"}})
    assert jumped.success
    assert jumped.data["detail"] == "step 'heat' is cancelled and its cleanup runs; the sequence stays paused at step 'hold'"
    wait_for(lambda: call(client, "steps.status", {"job_id": "z1"}).data["step_name"] == "hold", "at hold")
    assert call(client, "steps.resume", {"job_id": "z1"}).success
    wait_for(lambda: call(client, "steps.status", {"job_id": "z1"}).data["pausable"], "hold runs")
    assert call(client, "steps.send", {"job_id": "z1", "message": {"ok": True}}).success

    final = wait_for(
        lambda: (s := call(client, "steps.status", {"job_id": "z1"}).data)["state"] == "completed" and s, "completed"
    )
    broadcasts: list = []

    def final_broadcast_seen() -> bool:
        broadcasts.extend(client.take_broadcasts())
        return "completed" in states_of(broadcasts, "z1")

    wait_for(final_broadcast_seen, "the final state broadcast")
    mine = [b for b in broadcasts if b.data["job_id"] == "z1"]
    seqs = [b.data["seq"] for b in mine]
    assert seqs == list(range(1, len(seqs) + 1))  # every announcement, in order, no gap
    assert seqs[-1] == final["seq"]
    assert states_of(mine, "z1")[-1] == "completed"
    assert {"steps.state", "steps.location", "steps.duration", "steps.pausable"} <= {b.topic for b in mine}
    assert final["results"] == {"hold": {"ok": True}, "rinse": {"waited_s": 0.05}}


def test_refusals_carry_the_reason(client, rig):
    assert call(client, "steps.start", {"task": "stubborn", "job_id": "z2"}).success
    wait_for(lambda: call(client, "steps.status", {"job_id": "z2"}).success, "z2 runs")

    pause = call(client, "steps.pause", {"job_id": "z2"})
    assert not pause.success
    assert pause.error_message == "not pausable: the process has not set context.pausable = True"
    assert (pause.data["accepted"], pause.data["status"]) == (False, "REJECTED")
    resume = call(client, "steps.resume", {"job_id": "z2"})
    assert resume.error_message == "not paused"
    retry = call(client, "steps.retry", {"job_id": "z2"})
    assert retry.error_message.startswith("not failed")

    unknown = call(client, "steps.pause", {"job_id": "nope"})
    assert not unknown.success and "no steps job 'nope'" in unknown.error_message
    bad = call(client, "steps.jump", {"job_id": "z2"})
    assert not bad.success and "bad data for steps.jump" in bad.error_message and "point" in bad.error_message
    taken = call(client, "steps.start", {"task": "stubborn", "job_id": "z2"})
    assert not taken.success and "already used" in taken.error_message
    plain = call(client, "steps.start", {"task": "plain"})
    assert not plain.success and "not a step or sequence task" in plain.error_message
    topic = call(client, "steps.frobnicate", {})
    assert not topic.success and "steps.pause" in topic.error_message

    listed = call(client, "steps.list").data["jobs"]
    assert "z2" in [j["job_id"] for j in listed]
    halted = call(client, "steps.halt", {"job_id": "z2"})
    assert halted.success and halted.data["state"] == "halting"
    status = wait_for(
        lambda: (s := call(client, "steps.status", {"job_id": "z2"}).data)["state"] == "halted" and s, "halted"
    )
    assert status["ended_ms"] >= status["started_ms"] > 0
    again = call(client, "steps.halt", {"job_id": "z2"})
    assert not again.success and again.error_message.startswith("the job has ended (halted)")
    assert "z2" not in [j["job_id"] for j in call(client, "steps.list").data["jobs"]]
    assert "z2" in [j["job_id"] for j in call(client, "steps.list", {"ended": True}).data["jobs"]]


def test_a_steps_task_called_by_its_name_replies_with_its_outcome(client):
    reply = call(client, "prep", {"point": {"step": "rinse"}})
    assert reply.success and reply.data["results"] == {"rinse": {"waited_s": 0.05}}
    bad = call(client, "prep", {"point": {"step": "nowhere"}})
    assert not bad.success and bad.data["status"] == "REJECTED" and "no step 'nowhere'" in bad.error_message


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        ({"task": "soak", "data": {"seconds": "hot"}}, "data of step 'delay': Expected `float`, got `str` - at `$.seconds`"),
        ({"task": "soak", "point": {"index": "x"}}, "point of step 'delay': Expected `float`, got `object`"),
        ({"task": "prep", "point": {"step": "nope"}}, "no step 'nope' in this sequence (steps: heat, hold, rinse; or an index 0-2)"),
        ({"task": "prep", "data": {"nope": {}}}, "data of a sequence job maps step names (heat, hold, rinse) to their data, got {'nope': {}}"),
    ],
)
def test_a_start_whose_data_or_point_does_not_validate_is_refused_and_nothing_starts(client, start, reason):
    """Issue 13 item 14: refused with msgspec's message, as the task's own topic does."""
    reply = call(client, "steps.start", {**start, "job_id": "bad-start"})
    assert (reply.success, reply.error_message) == (False, reason)
    assert (reply.data["status"], reply.data["accepted"], reply.data["job_id"]) == ("REJECTED", False, "bad-start")
    status = call(client, "steps.status", {"job_id": "bad-start"})
    assert not status.success and "no steps job 'bad-start'" in status.error_message
    assert "bad-start" not in [j["job_id"] for j in call(client, "steps.list", {"ended": True}).data["jobs"]]


def test_messages_a_process_does_not_receive_are_bounded_by_inbox_size(client, rig):
    """steps.send to a process that never calls receive(): before, every
    message was kept (300 messages of 1 MiB took the host from 45 to 350 MB
    of RSS, without bound). Past inbox_size the send is refused, saying why."""
    assert call(client, "steps.start", {"task": "deaf", "job_id": "deaf1"}).success
    for n in range(2):
        assert call(client, "steps.send", {"job_id": "deaf1", "message": {"n": n}}).success
    refused = call(client, "steps.send", {"job_id": "deaf1", "message": {"n": 2}})
    assert not refused.success and refused.data["status"] == "REJECTED"
    assert refused.error_message == (
        "the process has 2 messages it has not received (inbox_size = 2 of task 'deaf'): "
        "this one is refused; send it again once the process calls context.receive()"
    )
    assert refused.data["accepted"] is False and refused.data["state"] == "running"
    assert rig.call(lambda: rig.controller.runs["deaf1"].inbox.qsize()) == 2
    assert call(client, "steps.halt", {"job_id": "deaf1"}).success
