"""Malformed traffic, load and vanishing clients against a real
``bridgehost run`` process over real ZeroMQ sockets.

- property-based fuzzing (hypothesis) of the frames: every message gets
  exactly one answer that is itself a valid message, the host never dies;
- memory stays bounded over many malformed frames (RSS before and after);
- 8 clients sending 10,000 requests: one response per request, BUSY when full;
- a client that disconnects mid-request leaks neither the job nor its process.

The long version (100k frames) runs in bench/reliability.py.
"""

from __future__ import annotations

import random

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridgehost_ipc.protocol import MAX_TRANSACTION_ID, MessageType, decode
from harness import (
    HostProcess,
    blast,
    gone,
    load,
    prepare_datastore,
    random_bad_message,
    request,
    wait_until,
)

MAX_FRAME = 65536
FUZZ_TRANSPORT = f"max_frame_bytes = {MAX_FRAME}"
WAIT_S = 15.0


@pytest.fixture(scope="module")
def fuzz_host(tmp_path_factory):
    process = HostProcess(tmp_path_factory.mktemp("fuzz"), transport_extra=FUZZ_TRANSPORT, load_queue=8)
    prepare_datastore(process.store)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def dealer(fuzz_host):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(fuzz_host.endpoint)
    yield sock
    sock.close(linger=0)


# -- strategies: one message is a list of frames --------------------------------

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
topics = st.sampled_from(["host.ping", "load.echo", "hostile.quick", "no.such.task", "", "*", "x" * 300]) | st.text(
    max_size=40
)
message_types = st.sampled_from(["request", "heartbeat", "response", "broadcast", "REQUEST", "bogus", ""])
valid_fields = {
    "transaction_id": st.integers(1, MAX_TRANSACTION_ID),
    "timecode": st.integers(0, 2**53),
    "topic": topics,
    "message_type": message_types,
    "data": json_value,
    "success": st.booleans(),
    "error_message": st.text(max_size=20),
}
huge_numbers = st.integers(min_value=2**32) | st.integers(max_value=-1) | st.sampled_from([1e308, -1e308, 2**200])


@st.composite
def objects(draw) -> dict:
    """A JSON object near a valid message: each field kept, dropped, or
    replaced by a value of another type or a huge number; maybe extra keys."""
    obj = {}
    for name, good in valid_fields.items():
        choice = draw(st.sampled_from(["good", "good", "good", "drop", "wrong", "huge"]))
        if choice == "good":
            obj[name] = draw(good)
        elif choice == "wrong":
            obj[name] = draw(json_value)
        elif choice == "huge":
            obj[name] = draw(huge_numbers)
    obj.update(draw(st.dictionaries(st.text(max_size=8), json_value, max_size=2)))
    return obj


def _encode(obj: dict) -> bytes:
    return msgspec.json.encode(obj)


one_frame = st.one_of(
    st.binary(max_size=300),  # random bytes
    objects().map(_encode),
    st.tuples(objects().map(_encode), st.integers(0, 400)).map(lambda t: t[0][: t[1]]),  # truncated JSON
    json_value.map(_encode),  # JSON that is not an object
    st.integers(MAX_FRAME + 1, MAX_FRAME + 4096).map(lambda n: b'{"transaction_id": 7, "x": "' + b"y" * n),  # oversized
)
messages = st.one_of(
    one_frame.map(lambda f: [f]),
    st.lists(one_frame, min_size=2, max_size=4),  # multipart
)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames=messages)
def test_every_frame_gets_exactly_one_valid_answer(fuzz_host, dealer, frames) -> None:
    dealer.send_multipart(frames)
    assert dealer.poll(int(WAIT_S * 1000)), f"no answer to {[f[:80] for f in frames]}"
    answer = decode(dealer.recv_multipart()[-1])  # REQ-shaped frames get [b"", answer]
    assert answer.message_type in (MessageType.RESPONSE, MessageType.HEARTBEAT)
    if not answer.success:
        assert answer.error_message and answer.data["status"] in ("REJECTED", "BUSY", "CRASH")
    assert fuzz_host.alive()


def test_after_fuzzing_nothing_was_answered_twice_and_the_host_serves(fuzz_host, dealer) -> None:
    """Runs after the fuzz test on the same socket: a ping's answer is the
    next message, so no frame was answered twice."""
    dealer.send(_encode({"transaction_id": 424242, "timecode": 0, "topic": "host.ping", "message_type": "request"}))
    assert dealer.poll(int(WAIT_S * 1000))
    answer = decode(dealer.recv_multipart()[-1])
    assert (answer.transaction_id, answer.success) == (424242, True)
    assert dealer.poll(200) == 0


def test_memory_stays_bounded_over_malformed_frames(fuzz_host) -> None:
    rng = random.Random(5)
    warm = blast(fuzz_host.endpoint, (random_bad_message(rng, MAX_FRAME) for _ in range(2000)))
    assert warm == (2000, 2000)
    before = fuzz_host.rss_mb()
    sent, answers = blast(fuzz_host.endpoint, (random_bad_message(rng, MAX_FRAME) for _ in range(20_000)))
    growth = fuzz_host.rss_mb() - before
    assert (sent, answers) == (20_000, 20_000)
    assert growth < 40, f"host RSS grew {growth:.1f} MB over 20k malformed frames"
    assert fuzz_host.alive()


@pytest.mark.parametrize("window", [None, 8], ids=["flat-out", "paced"])
def test_load_every_request_answered_exactly_once(fuzz_host, window) -> None:
    """8 clients send 10,000 requests, as fast as they can or with 8
    unanswered each, to a task whose queue holds 8: every request gets one
    response (by transaction id), those refused say BUSY, the others echo
    their own data."""
    result = load(fuzz_host.endpoint, clients=8, requests=10_000, window=window, within=300)
    assert result.requests_sent == 10_000
    assert (result.responses_received, result.duplicates, result.lost) == (10_000, 0, 0)
    assert result.wrong_data == 0 and result.other_errors == 0
    ran = result.responses_received - result.busy
    assert ran > 0
    if window is None:
        assert result.busy > 0, "the queue never filled: the test did not load the host"


def test_client_that_disconnects_mid_request_leaks_nothing(fuzz_host, module_dir) -> None:
    """The script runs on after its client vanished; it ends, its process is
    reaped, the withdrawn request (its response lost) is logged, and the task
    serves the next one."""
    pids = fuzz_host.pids_dir / "vanish.pids"
    (fuzz_host.store.scripts_dir / "vanish.py").write_text(
        "import os, time\n\ndef calculate_results(ctx):\n"
        f"    open({str(pids)!r}, 'w').write(str(os.getpid()))\n    time.sleep(1)\n    return {{'done': True}}\n"
    )
    before = len(fuzz_host.runs())
    with fuzz_host.client(linger_s=1.0) as client:
        tid = client.send("hostile.quick", request("vanish.py"))
        assert wait_until(pids.exists, WAIT_S), "the script never started"
    # the client is closed now, its request still running
    pid = int(pids.read_text())
    assert wait_until(lambda: gone(pid) and len(fuzz_host.runs()) <= before, WAIT_S)
    assert wait_until(lambda: f"1 request(s) withdrawn (their responses are lost; a job still queued is not started): transaction ids {tid}" in fuzz_host.output(), WAIT_S)
    with fuzz_host.client() as client:
        assert client.call("hostile.quick", request("good.py"), timeout_s=WAIT_S).success
