"""bridgehost plugin ``ipc``: the ``zmq`` transport and trigger kinds."""

from __future__ import annotations

from bridgehost import hookimpl

from bridgehost_ipc.transport import ZmqTransport, ZmqTransportConfig
from bridgehost_ipc.trigger import ZmqTrigger, ZmqTriggerConfig


@hookimpl
def register_transports(registry):
    registry.add(
        "zmq",
        ZmqTransport,
        config=ZmqTransportConfig,
        summary="ZeroMQ ROUTER: one-frame JSON messages (AutoCore CommandMessage) from DEALER/REQ clients",
    )


@hookimpl
def register_triggers(registry):
    registry.add(
        "zmq",
        ZmqTrigger,
        config=ZmqTriggerConfig,
        summary="runs the task named by a ZeroMQ request's topic and answers with its outcome",
    )
