"""The synchronous client: AutoCore's send/take_response style for control
loops, and a blocking call for scripts."""

from __future__ import annotations

import pytest

from bridgehost_ipc.client import Client, SendQueueFull
from bridgehost_ipc.protocol import MAX_TRANSACTION_ID, MessageType


def test_take_response_never_blocks_and_returns_each_response_once(rig):
    with rig.client() as client:
        tid = client.send("gated", {"step": 1})
        assert client.take_response(tid) is None  # the job is held open: it returns rather than wait
        rig.host.gate.open()
        response = rig.wait_response(client, tid)
        assert (response.transaction_id, response.data) == (tid, {"released": True})
        assert client.take_response(tid) is None  # taken once, then forgotten


def test_responses_are_matched_by_tid_whatever_order_they_arrive_in(rig):
    with rig.client() as client:
        slow = client.send("gated")
        fast = client.send("echo", {"n": 2})
        assert rig.wait_response(client, fast).data == {"n": 2}
        rig.host.gate.open()
        assert rig.wait_response(client, slow).data == {"released": True}


def test_transaction_ids_count_from_1_and_wrap_skipping_0(rig):
    with rig.client() as client:
        assert [client.send("echo") for _ in range(3)] == [1, 2, 3]
        client._next_tid = MAX_TRANSACTION_ID  # fast-forward: 2**32 sends would take hours
        assert client.send("echo") == MAX_TRANSACTION_ID
        assert client.send("echo") == 1
        assert rig.wait_response(client, MAX_TRANSACTION_ID).transaction_id == MAX_TRANSACTION_ID


def test_call_returns_failed_responses_rather_than_raising(rig):
    with rig.client() as client:
        response = client.call("fail", {})
    assert not response.success and response.error_message == "force limit exceeded"


def test_call_timeout_names_topic_tid_and_endpoint(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody-listens.sock"
    with Client(endpoint) as client:
        client.send("echo")
        with pytest.raises(TimeoutError) as raised:
            client.call("python.run_analysis", {"run_id": "r1"}, timeout_s=0.2)
    text = str(raised.value)
    assert "'python.run_analysis'" in text and "transaction id 2" in text and endpoint in text


def test_wait_ready_returns_the_ping_once_the_host_answers(rig):
    with rig.client() as client:
        response = client.wait_ready(10)
    assert response.success and response.topic == "host.ping"


def test_wait_ready_stops_at_once_when_the_host_process_has_ended(tmp_path):
    tries = []
    with Client(f"ipc://{tmp_path}/ended.sock") as client, pytest.raises(ConnectionError, match="ended before it answered host.ping"):
        client.wait_ready(60, alive=lambda: tries.append(1) or len(tries) < 2)
    assert len(tries) == 2  # asked before each try; the second said no


def test_wait_ready_times_out_naming_the_endpoint(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    with Client(endpoint) as client, pytest.raises(TimeoutError, match="host.ping") as raised:
        client.wait_ready(0.3)
    assert endpoint in str(raised.value)


def test_late_answer_to_a_timed_out_call_is_dropped(rig):
    with rig.client() as client:
        with pytest.raises(TimeoutError):
            client.call("gated", timeout_s=0.05)
        rig.host.gate.open()
        assert client.call("echo", {"after": True}).data == {"after": True}  # the late answer arrived first
        assert client.take_response(1) is None


def test_send_never_blocks_when_the_host_is_absent(tmp_path):
    with Client(f"ipc://{tmp_path}/absent.sock", sndhwm=1) as client, pytest.raises(SendQueueFull, match="send queue is full"):
        for _ in range(10_000):
            client.send("echo")


def test_send_refuses_data_json_cannot_carry(rig):
    with rig.client() as client:
        with pytest.raises(TypeError, match="'echo' is not JSON-encodable"):
            client.send("echo", {"when": object()})
        with pytest.raises(ValueError, match="topic"):
            client.send("")
        assert client.send("echo") == 1  # a refused send used no transaction id


def test_broadcasts_are_kept_apart_and_bounded(rig):
    with rig.client(max_broadcasts=2) as client:
        rig.wait_response(client, client.heartbeat())
        for pct in (10, 20, 30):
            rig.loop.run(rig.transport.broadcast("job.progress", {"pct": pct}))
        tid = client.send("echo", {"n": 1})
        assert rig.wait_response(client, tid).data == {"n": 1}  # broadcasts did not get in the way
        kept = client.take_broadcasts()
    assert [b.data["pct"] for b in kept] == [20, 30]  # the oldest was dropped
    assert all(b.message_type is MessageType.BROADCAST for b in kept)


def test_client_reconnecting_with_its_routing_id_takes_it_over(rig):
    with rig.client(routing_id=b"rig-client-1") as old:
        assert old.call("echo").success
        # A new connection with the same routing id while the old one lingers
        # (a control program restarted): ROUTER_HANDOVER gives it the id.
        with rig.client(routing_id=b"rig-client-1") as new:
            assert new.call("echo", {"again": True}, timeout_s=5).data == {"again": True}


def test_client_refuses_endpoints_and_topics_the_host_cannot_take():
    with pytest.raises(ValueError, match="cannot connect to 'localhost:5555'"):
        Client("localhost:5555")
    with Client("tcp://127.0.0.1:9") as client, pytest.raises(ValueError, match="1 to 256 characters"):
        client.send("t" * 257)
