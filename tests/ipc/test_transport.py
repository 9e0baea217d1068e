"""The zmq transport over real sockets: every request gets exactly one
response with its transaction id, and nothing a client sends stops the host
serving."""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import threading
import time

import msgspec
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bridgehost_ipc.peers import Connections
from bridgehost_ipc.protocol import CommandMessage, MessageType, decode
from bridgehost_ipc.transport import TransportError, ZmqTransport, ZmqTransportConfig


def test_round_trip_echoes_tid_topic_and_data(rig):
    before = int(time.time() * 1000)
    with rig.client() as client:
        response = client.call("echo", {"force": [0.0, 100.5], "run_id": "r1"})
    assert response.message_type is MessageType.RESPONSE
    assert response.transaction_id == 1
    assert response.topic == "echo"
    assert response.success and response.error_message == ""
    assert response.data == {"force": [0.0, 100.5], "run_id": "r1"}
    assert response.timecode >= before  # a fresh timecode, in ms since the epoch
    assert rig.host.submitted[0].source == "zmq" and rig.host.submitted[0].ref == "1"


def test_concurrent_dealers_each_get_their_own_responses(rig):
    clients, per_client = 8, 25
    results: dict[int, list[tuple[int, CommandMessage]]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            client = rig.client()
            tids = [client.send("echo", {"client": n, "i": i}) for i in range(per_client)]
            results[n] = [(tid, rig.wait_response(client, tid)) for tid in tids]
        except BaseException as e:  # surfaced below: a thread's assert would be lost
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    for n in range(clients):
        assert [tid for tid, _ in results[n]] == list(range(1, per_client + 1))
        for i, (tid, response) in enumerate(results[n]):
            assert response.transaction_id == tid
            assert response.data == {"client": n, "i": i}


def test_slow_request_does_not_hold_up_others(rig):
    with rig.client() as client:
        slow = client.send("gated")
        assert client.call("echo", {"n": 1}).data == {"n": 1}  # answered while "gated" still runs
        assert client.take_response(slow) is None
        rig.host.gate.open()
        assert rig.wait_response(client, slow).data == {"released": True}


BAD_FRAMES = {
    "not JSON": ([b"not json"], 0, "not valid JSON"),
    "empty frame": ([b""], 0, "no payload"),
    "invalid UTF-8": ([b"\xff\xfe"], 0, "not valid JSON"),
    "truncated JSON keeps its tid": ([b'{"transaction_id": 12, "topic": "ec'], 12, "not valid JSON"),
    "JSON array": ([b"[1, 2]"], 0, "JSON array, not an object"),
    "JSON string": ([b'"echo"'], 0, "JSON str, not an object"),
    "missing topic": ([dict(transaction_id=5, topic=...)], 5, "field `topic` is missing"),
    "missing transaction_id": ([dict(transaction_id=...)], 0, "field `transaction_id` is missing"),
    "timecode wrong type": ([dict(transaction_id=6, timecode="noon")], 6, "field `timecode`: expected int, got str"),
    "tid wrong type": ([dict(transaction_id="7")], 0, "field `transaction_id`: expected int, got str"),
    "tid over u32": ([dict(transaction_id=2**32)], 0, "field `transaction_id`: expected int <= 4294967295"),
    "topic too long": ([dict(transaction_id=14, topic="t" * 300)], 14, "field `topic`: expected str of length <= 256"),
    "success wrong type": ([dict(transaction_id=13, success="yes")], 13, "field `success`: expected bool"),
    "unknown message_type": (
        [dict(transaction_id=8, message_type="command")],
        8,
        "expected one of: request, response, broadcast, heartbeat",
    ),
    "client sends response": ([dict(transaction_id=9, message_type="response")], 9, "sent by the host only"),
    "client sends broadcast": ([dict(transaction_id=10, message_type="broadcast")], 10, "sent by the host only"),
    "multipart": ([dict(transaction_id=11)] * 2, 11, "exactly one frame, received 2 payload frames"),
    "nested too deeply keeps its tid": (  # 200 kB: deeper than msgspec's recursion goes (it raised RecursionError)
        [b'{"transaction_id": 15, "timecode": 0, "topic": "echo", "message_type": "request", "data": '
         + b"[" * 100_000 + b"]" * 100_000 + b"}"],
        15,
        "nested too deeply",
    ),
    "nested too deeply after a bad field": (
        [b'{"transaction_id": 16, "timecode": "noon", "topic": "echo", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
        16,
        "field `timecode`: expected int",
    ),
}


@pytest.mark.parametrize("frames, tid, words", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_bad_message_gets_error_response_and_host_keeps_serving(rig, frame, caplog, frames, tid, words):
    sock = rig.raw()
    payload = [f if isinstance(f, bytes) else frame(**f) for f in frames]
    with caplog.at_level(logging.WARNING, logger="bridgehost.ipc"):
        error = rig.exchange(sock, *payload)
    assert error.message_type is MessageType.RESPONSE
    assert error.transaction_id == tid
    assert error.success is False
    assert words in error.error_message
    assert error.data == {"status": "REJECTED", "status_code": 8}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "bridgehost.ipc"]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    rig.assert_serves(sock)


def test_malformed_frame_log_line_shows_only_a_short_prefix(rig, caplog):
    sock = rig.raw()
    with caplog.at_level(logging.WARNING, logger="bridgehost.ipc"):
        rig.exchange(sock, b"x" * 5000)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "bridgehost.ipc"]
    assert "x" * 64 in line and "x" * 65 not in line


def test_oversized_frame_gets_error_naming_size_and_limit(make_rig, frame):
    rig = make_rig(max_frame_bytes=1024)
    sock = rig.raw()
    big = frame(transaction_id=21, data={"blob": "a" * 2000})
    error = rig.exchange(sock, big)
    assert error.transaction_id == 21  # recovered from the start of the frame
    assert not error.success
    assert f"frame of {len(big)} bytes exceeds the limit of 1024 bytes" in error.error_message
    rig.assert_serves(sock)


def test_frame_over_the_libzmq_backstop_disconnects_that_peer_only(make_rig, frame):
    rig = make_rig(max_frame_bytes=1024)  # backstop: MAXMSGSIZE 4096
    sock = rig.raw()
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    monitor.setsockopt(zmq.RCVTIMEO, 5000)
    try:
        sock.send(frame(transaction_id=22, data={"blob": "a" * 5000}))
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
    rig.assert_serves(rig.raw())


def test_unknown_topic_without_trigger_names_what_is_handled(make_rig):
    rig = make_rig(trigger=False)
    with rig.client() as client:
        response = client.call("python.run_analysis", {})
    assert not response.success
    assert "unknown topic 'python.run_analysis'" in response.error_message
    assert "host.ping" in response.error_message and "[[triggers]]" in response.error_message
    assert response.data == {"status": "REJECTED", "status_code": 8}


def test_heartbeat_is_echoed_with_its_tid(rig):
    with rig.client() as client:
        tid = client.heartbeat()
        answer = rig.wait_response(client, tid)
    assert answer.message_type is MessageType.HEARTBEAT
    assert (answer.transaction_id, answer.topic, answer.success) == (tid, "heartbeat", True)
    assert rig.host.submitted == []  # a heartbeat never starts a job


def test_req_client_gets_responses_through_its_envelope(rig, frame):
    sock = rig.raw(zmq.REQ)
    for tid in (1, 2):  # a second round trip proves the REQ state machine was honoured
        response = rig.exchange(sock, frame(transaction_id=tid, data={"n": tid}))
        assert (response.transaction_id, response.data) == (tid, {"n": tid})
    error = rig.exchange(sock, b"[]")
    assert not error.success and "not an object" in error.error_message


def test_host_ping(rig):
    with rig.client() as client:
        response = client.call("host.ping")
    assert response.success
    assert response.data["name"] == "test-rig"
    assert response.data["tasks"] == ["echo", "fail", "gated"]
    assert response.data["protocol"] == 1
    assert isinstance(response.data["version"], str)
    assert rig.host.submitted == []


def test_handlers_route_by_exact_topic_then_longest_prefix(rig):
    def handler(label):
        async def handle(message):
            return message.reply({"by": label})

        return handle

    t = rig.transport
    rig.loop.call(t.add_handler, "steps.*", handler("steps.*"))
    rig.loop.call(t.add_handler, "steps.jump.*", handler("steps.jump.*"))
    rig.loop.call(t.add_handler, "steps.pause", handler("steps.pause"))
    with rig.client() as client:
        assert client.call("steps.pause").data == {"by": "steps.pause"}
        assert client.call("steps.halt").data == {"by": "steps.*"}
        assert client.call("steps.jump.to").data == {"by": "steps.jump.*"}
        assert client.call("echo", {"a": 1}).data == {"a": 1}  # the trigger's "*" takes the rest
        rig.loop.call(t.remove_handler, "steps.*")
        assert client.call("steps.halt").data["status"] == "REJECTED"  # now the host's: no such task
    assert "steps.jump.*" in t.patterns()


def test_add_handler_refuses_a_taken_pattern_naming_the_transport(rig):
    async def handle(message):
        return message.reply()

    with pytest.raises(ValueError, match="'host.ping' already has a handler on zmq transport 'zmq'"):
        rig.transport.add_handler("host.ping", handle)


def test_handler_errors_become_crash_responses(rig, caplog):
    async def broken(message):
        raise RuntimeError("motor controller offline")

    async def wrong_type(message):
        return {"not": "a CommandMessage"}

    async def not_json(message):
        return message.reply({"value": object()})

    for pattern, handler in [("x.broken", broken), ("x.wrong", wrong_type), ("x.set", not_json)]:
        rig.loop.call(rig.transport.add_handler, pattern, handler)
    with rig.client() as client, caplog.at_level(logging.CRITICAL, logger="bridgehost.ipc"):
        broken_r, wrong_r, set_r = (client.call(t) for t in ("x.broken", "x.wrong", "x.set"))
        assert client.call("echo", {"still": "serving"}).success
    assert "RuntimeError: motor controller offline" in broken_r.error_message
    assert "expected a CommandMessage" in wrong_r.error_message
    assert "cannot be encoded as JSON" in set_r.error_message
    for r in (broken_r, wrong_r, set_r):
        assert not r.success and r.data["status"] == "CRASH" and r.data["status_code"] == 3


def test_handler_cannot_forge_another_transaction_id(rig):
    async def forger(message):
        return msgspec.structs.replace(message.reply({"ok": 1}), transaction_id=4242, topic="elsewhere")

    rig.loop.call(rig.transport.add_handler, "x.forge", forger)
    with rig.client() as client:
        response = client.call("x.forge")
    assert (response.transaction_id, response.topic) == (1, "x.forge")


def test_response_over_the_frame_limit_becomes_an_error(make_rig):
    rig = make_rig(max_frame_bytes=1024)

    async def huge(message):
        return message.reply({"blob": "a" * 4000})

    rig.loop.call(rig.transport.add_handler, "x.huge", huge)
    with rig.client() as client:
        response = client.call("x.huge")
    assert not response.success and "over the limit of 1024 bytes" in response.error_message


def test_in_flight_limit_answers_busy(make_rig):
    rig = make_rig(max_in_flight=1)
    with rig.client() as client:
        first = client.send("gated")
        rig.wait_until(lambda: len(rig.host.submitted) == 1, "the first request is in flight")
        busy = client.call("echo")
        assert not busy.success and busy.data == {"status": "BUSY", "status_code": 7}
        assert "max_in_flight" in busy.error_message
        assert rig.host.refused == ["in_flight_limit"]  # counted for host.status and the metrics
        rig.host.gate.open()
        assert rig.wait_response(client, first).success


def test_broadcast_reaches_recent_dealers_and_forgets_gone_ones(rig, frame):
    a, b = rig.client(), rig.client()
    req = rig.raw(zmq.REQ)
    for client in (a, b):
        rig.wait_response(client, client.heartbeat())  # the host has now heard from both
    rig.exchange(req, frame())
    assert rig.loop.run(rig.transport.broadcast("job.progress", {"pct": 50})) == 2  # not the REQ peer
    a.poll(5)
    (received,) = a.take_broadcasts()
    assert received.message_type is MessageType.BROADCAST
    assert (received.topic, received.data, received.transaction_id) == ("job.progress", {"pct": 50}, 1)
    assert a.take_broadcasts() == []
    b.close()

    def only_a_reached() -> bool:
        return rig.loop.run(rig.transport.broadcast("job.progress", {})) == 1

    rig.wait_until(only_a_reached, "the closed peer is forgotten")


def test_broadcast_skips_peers_not_heard_within_ttl(make_rig):
    rig = make_rig(peer_ttl_s=0.05)
    with rig.client() as client:
        rig.wait_response(client, client.heartbeat())
        time.sleep(0.1)  # let the peer's entry expire (the TTL is what is under test)
        assert rig.loop.run(rig.transport.broadcast("job.progress", {})) == 0


def test_clients_that_come_and_go_do_not_pile_up_in_the_peer_table(make_rig):
    """Each new DEALER has a new routing id; without broadcasts the host
    must still forget the silent ones (else memory grows with every client)."""
    rig = make_rig(peer_ttl_s=0.05)
    for _ in range(50):
        with rig.client() as client:
            rig.wait_response(client, client.heartbeat())
    time.sleep(0.1)  # every one of them is now silent for longer than the TTL
    with rig.client() as client:
        rig.wait_response(client, client.heartbeat())
        assert len(rig.transport._peers) == 1


def test_stop_sends_responses_of_requests_that_finish_in_time(make_rig):
    rig = make_rig(stop_timeout_s=30)
    with rig.client() as client:
        tid = client.send("gated")
        rig.wait_until(lambda: len(rig.host.submitted) == 1, "the request is in flight")
        stopping = rig.loop.submit(rig.transport.stop())
        rig.host.gate.open()
        stopping.result(10)
        assert rig.wait_response(client, tid).data == {"released": True}


def test_stop_answers_requests_still_running_after_the_timeout_cancelled(make_rig):
    rig = make_rig(stop_timeout_s=0.2)
    with rig.client() as client:
        tid = client.send("gated")
        rig.wait_until(lambda: len(rig.host.submitted) == 1, "the request is in flight")
        rig.loop.run(rig.transport.stop())
        response = rig.wait_response(client, tid)
    assert not response.success
    assert response.data == {"status": "CANCELLED", "status_code": 6}


def test_second_transport_on_a_taken_endpoint_fails_to_start_clearly(rig, loop_thread):
    other = ZmqTransport(ZmqTransportConfig(kind="zmq", endpoint=rig.endpoint), rig.host)
    with pytest.raises(TransportError, match=f"cannot bind ZeroMQ ROUTER to {rig.endpoint}") as error:
        loop_thread.run(other.start())
    assert "another process is listening there" in str(error.value)


def test_an_address_this_machine_does_not_have_is_not_blamed_on_another_process(rig, loop_thread):
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address, so bind fails with EADDRNOTAVAIL
    other = ZmqTransport(ZmqTransportConfig(kind="zmq", endpoint="tcp://192.0.2.1:5555"), rig.host)
    with pytest.raises(TransportError, match="Cannot assign requested address") as error:
        loop_thread.run(other.start())
    assert "this machine has no such address" in str(error.value)
    assert "another process" not in str(error.value)


def test_ipc_endpoint(make_rig, tmp_path):
    rig = make_rig(endpoint=f"ipc://{tmp_path}/host.sock")
    assert rig.endpoint == f"ipc://{tmp_path}/host.sock"
    with rig.client() as client:
        assert client.call("echo", {"via": "ipc"}).data == {"via": "ipc"}


def test_floods_of_bad_frames_and_in_flight_busy_are_logged_rate_limited(make_rig, caplog):
    """docs/ipc-protocol.md section 5: each error the transport answers is
    logged as a WARNING, at most one line per cause per interval."""
    rig = make_rig(max_in_flight=1)
    with rig.client() as client, caplog.at_level(logging.WARNING, logger="bridgehost.ipc"):
        gated = client.send("gated")
        rig.wait_until(lambda: len(rig.host.submitted) == 1, "the gated request is in flight")
        busy = [client.call("echo", {"n": n}) for n in range(50)]
        raw = rig.raw()
        for _ in range(200):
            raw.send(b"not json")
        for _ in range(200):
            raw.recv()
        rig.host.gate.open()
        assert rig.wait_response(client, gated).success
    assert {r.data["status"] for r in busy} == {"BUSY"}
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "BUSY: busy:" in m]) == 1, messages[:5]
    assert len([m for m in messages if "bad message" in m]) == 1


def test_a_client_that_never_reads_costs_at_most_its_queue_bound_and_nothing_once_gone(make_rig, frame):
    """docs/ipc-protocol.md section 9, slow readers: the host keeps at most
    peer_queue_bytes for a client that does not read (libzmq holds a few
    messages more), drops and counts the rest, stands in short error
    responses for dropped ones, and frees it all when the client goes."""
    rig = make_rig(peer_queue_bytes=1 << 20, queue_bytes=4 << 20)
    blob = "x" * 200_000
    handled: list[int] = []

    async def big(message):
        handled.append(message.transaction_id)
        return message.reply({"blob": blob})

    rig.loop.call(rig.transport.add_handler, "x.big", big)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, 1)  # set before connect: this client buffers next to nothing
    sock.setsockopt(zmq.RCVBUF, 65536)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(rig.endpoint)
    try:
        count = 200  # 40 MB of responses
        for tid in range(1, count + 1):
            sock.send(frame(transaction_id=tid, topic="x.big"))
        rig.wait_until(lambda: len(handled) == count and not rig.transport._in_flight, "every request handled")
        outboxes = rig.transport.outboxes
        assert outboxes.size <= (1 << 20) + 64 * 1024  # the bound, plus the headroom of the notices
        assert outboxes.dropped > 100
        # Reading now: each answer is the full response or a short error that says it was dropped.
        sock.setsockopt(zmq.RCVTIMEO, 2000)
        answers = []
        with contextlib.suppress(zmq.Again):
            while True:
                answers.append(decode(sock.recv()))
        full = [a for a in answers if a.success]
        notices = [a for a in answers if not a.success]
        assert full and all(a.data == {"blob": blob} for a in full)
        assert notices and all("was dropped" in a.error_message and a.data["status"] == "CRASH" for a in notices)
        assert len({a.transaction_id for a in answers}) == len(answers)  # never two answers for one request
        for tid in range(count + 1, count + 40):  # not reading again: the queue fills up again
            sock.send(frame(transaction_id=tid, topic="x.big"))
        rig.wait_until(lambda: outboxes.size > 0, "responses wait for the client")
    finally:
        sock.close(linger=0)
    connections = rig.transport.connections
    rig.wait_until(lambda: outboxes.size == 0 and len(connections) == 0, "what waited for the client is freed when it goes")


def _raw_connect(endpoint: str) -> socket.socket:
    """A plain stream socket connected to ``endpoint``: no ZMTP, it never speaks."""
    scheme, _, address = endpoint.partition("://")
    if scheme == "ipc":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    sock.settimeout(5.0)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("scheme", ["tcp", "ipc"])
def test_connections_past_max_connections_are_closed_and_clients_already_connected_keep_being_served(
    make_rig, tmp_path, caplog, scheme
):
    """docs/ipc-protocol.md section 9, connections: libzmq accepts connections
    without limit, each holding a file descriptor and buffers, so one client
    could take every descriptor the host may open. Past max_connections a
    new connection is closed as soon as it is accepted, counted and logged
    (rate-limited); clients already connected are served throughout, and a
    new client gets in once connections close."""
    endpoint = "tcp://127.0.0.1:*" if scheme == "tcp" else f"ipc://{tmp_path}/host.sock"
    rig = make_rig(endpoint=endpoint, max_connections=4)
    transport = rig.transport
    flood: list[socket.socket] = []
    with rig.client() as client, caplog.at_level(logging.WARNING, logger="bridgehost.ipc"):
        assert client.call("echo", {"n": 0}).data == {"n": 0}  # connection 1 of 4
        try:
            flood = [_raw_connect(rig.endpoint) for _ in range(20)]
            rig.wait_until(lambda: sum(map(_closed_by_peer, flood)) == 17, "the 17 connections past the bound are closed")
            # closed at once, none of the 3 within the bound later
            assert transport.connections_refused == 17
            assert client.call("echo", {"n": 1}).data == {"n": 1}
            rig.wait_until(lambda: transport.connections.open == 4, "the count is back to the bound")
            assert transport.status()["connections"] == 4
        finally:
            for sock in flood:
                sock.close()
        rig.wait_until(lambda: transport.connections.open == 1, "closed connections are no longer counted")
        with rig.client() as late:
            assert late.call("echo", {"n": 2}).data == {"n": 2}
    lines = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert lines and len(lines) < 17 and "more than max_connections (4) were open" in lines[0], lines


def test_connections_that_send_messages_do_not_get_past_max_connections(make_rig, frame):
    """A client that says something on each of its connections does not
    hold more than max_connections either: past the bound the newest go,
    and the client that was there first keeps being served."""
    rig = make_rig(max_connections=3)
    transport = rig.transport
    with rig.client() as client:
        assert client.call("echo", {"n": 0}).data == {"n": 0}
        dealers = []
        for tid in range(10):
            sock = rig.raw()
            sock.send(frame(transaction_id=tid, topic="host.ping"))
            dealers.append(sock)
        rig.wait_until(lambda: transport.connections_refused >= 8, "the connections past the bound are closed")
        rig.wait_until(lambda: transport.connections.open <= 3, "the bound holds")
        assert client.call("echo", {"n": 1}).data == {"n": 1}


def test_check_warns_when_max_connections_is_past_the_open_files_limit(rig, monkeypatch):
    """``bridgehost check`` and the start-up log say when max_connections
    connections would leave the host no file descriptor for its own work."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, hard) if which == resource.RLIMIT_NOFILE else (soft, hard))
    assert ZmqTransport(ZmqTransportConfig(kind="zmq"), rig.host).check() == []  # 256 + 256 fit in 1024
    warnings = ZmqTransport(ZmqTransportConfig(kind="zmq", max_connections=4096), rig.host).check()
    assert len(warnings) == 1
    assert "max_connections = 4096" in warnings[0] and "only 1024 files" in warnings[0]
    assert "lower max_connections to 768" in warnings[0]


def test_connections_being_closed_are_not_counted_again_and_the_oldest_client_is_kept_last():
    """Between the transport's shutdown(2) of a connection and libzmq's
    report that it closed, the descriptor is still a socket on the endpoint:
    counting it had the bound close a client being served (seen 2 times in
    80 under load). Eviction order: silent connections oldest first, then
    the newest of those that spoke."""
    connections = Connections()
    for fd in (10, 11, 12, 13):
        connections.event(zmq.EVENT_ACCEPTED, fd)
    connections.heard(b"client", 10)
    connections.heard(b"dealer", 13)
    assert connections.eviction_order() == [11, 12, 13, 10]
    connections.closing(11)
    connections.closing(12)
    assert connections.open == 2
    assert connections.eviction_order() == [13, 10]
    connections.event(zmq.EVENT_DISCONNECTED, 11)
    connections.event(zmq.EVENT_ACCEPTED, 12)  # libzmq closed 12 (event lost) and a new connection reuses the number
    assert connections.open == 3
    assert connections.eviction_order() == [12, 13, 10]
