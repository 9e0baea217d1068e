"""Properties of the frame parser alone (no sockets, so thousands of
examples are cheap): whatever bytes arrive, ``decode`` returns a message or
raises ``ProtocolError`` carrying what it could recover, never anything else
(anything else escaped the transport's handling and left a client unanswered)."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridgehost_ipc.protocol import MAX_TRANSACTION_ID, CommandMessage, ProtocolError, decode

GOOD = {"transaction_id": 7, "timecode": 0, "topic": "load.echo", "message_type": "request", "data": {}}


def _splice(parts: tuple[bytes, int, bytes]) -> bytes:
    """A valid frame with ``junk`` put in at ``at``: bad UTF-8 inside a string, stray bytes."""
    frame, at, junk = parts
    at %= len(frame) + 1
    return frame[:at] + junk + frame[at:]


frames = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.just(msgspec.json.encode(GOOD)), st.integers(0, 200), st.binary(min_size=1, max_size=4)).map(_splice),
    st.dictionaries(
        st.sampled_from([*GOOD, "x"]),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.lists(st.integers()),
        max_size=6,
    ).map(msgspec.json.encode),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=frames)
@example(frame=b'{"transaction_id":1,"timecode":0,"topic":"\xc4","message_type":"request"}')
@example(frame=b'"\xc4')
def test_decode_returns_a_message_or_raises_protocol_error(frame: bytes) -> None:
    try:
        message = decode(frame)
    except ProtocolError as e:
        assert e.message
        assert 0 <= e.transaction_id <= MAX_TRANSACTION_ID
        return
    assert isinstance(message, CommandMessage)
