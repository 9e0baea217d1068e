"""The wire format as a Rust/serde peer sees it, and the config of the kinds."""

from __future__ import annotations

import msgspec
import pytest

from bridgehost.config import parse_config
from bridgehost.errors import ConfigError
from bridgehost.plugins import load_plugins
from bridgehost_ipc.protocol import CommandMessage, MessageType, ProtocolError, decode, encode, new_request
from bridgehost_ipc.transport import ZmqTransportConfig


def test_encoding_has_every_field_with_transaction_id_first():
    frame = encode(new_request(7, "python.run_analysis", {"run_id": "r1"}))
    assert frame.startswith(b'{"transaction_id":7,')  # lets the host recover ids from cut-off frames
    obj = msgspec.json.decode(frame)
    assert list(obj) == ["transaction_id", "timecode", "topic", "message_type", "data", "success", "error_message"]
    assert obj["message_type"] == "request" and obj["success"] is True and obj["error_message"] == ""


def test_decode_defaults_optional_fields_and_ignores_unknown_ones():
    message = decode(b'{"transaction_id":1,"timecode":2,"topic":"t","message_type":"heartbeat","added_later":true}')
    assert message == CommandMessage(transaction_id=1, timecode=2, topic="t", message_type=MessageType.HEARTBEAT)
    assert message.data == {} and message.success is True and message.error_message == ""


def test_protocol_error_recovers_ids_from_an_invalid_object():
    with pytest.raises(ProtocolError) as raised:
        decode(b'{"transaction_id":41,"timecode":-1,"topic":"python.run_analysis","message_type":"request"}')
    error = raised.value
    assert (error.transaction_id, error.topic) == (41, "python.run_analysis")
    assert error.message.startswith("field `timecode`: expected int >= 0")


def test_transport_config_defaults_are_loopback_and_16_mib():
    config = msgspec.convert({"kind": "zmq"}, ZmqTransportConfig)
    assert config.endpoint == "tcp://127.0.0.1:5555"
    assert config.max_frame_bytes == 16 * 2**20


@pytest.mark.parametrize(
    "table, key",
    [
        ({"endpoint": "localhost:5555"}, "transports[0].endpoint"),
        ({"max_frame_bytes": 10}, "transports[0].max_frame_bytes"),
        ({"stop_timeout_s": -1}, "transports[0].stop_timeout_s"),
        ({"endpiont": "tcp://127.0.0.1:1"}, "transports[0].endpiont"),
    ],
)
def test_bad_transport_config_names_the_key(table, key):
    plugins = load_plugins(load=["ipc"])
    with pytest.raises(ConfigError) as raised:
        parse_config({"transports": [{"kind": "zmq", **table}]}, plugins, source="rig.toml")
    assert raised.value.key == key and raised.value.source == "rig.toml"
