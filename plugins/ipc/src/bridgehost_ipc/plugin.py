"""bridgehost plugin ``ipc``: the ``zmq`` transport and trigger kinds, and
the ``bridgehost call`` command.

The transport and trigger are imported inside their hooks, so loading the
plugin for the command line (``bridgehost --help``) does not import pyzmq.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost import hookimpl

if TYPE_CHECKING:
    from bridgehost.commands import PluginCommands
    from bridgehost.registry import PluginRegistry


@hookimpl
def register_transports(registry: PluginRegistry) -> None:
    from bridgehost_ipc.transport import ZmqTransport, ZmqTransportConfig

    registry.add(
        "zmq",
        ZmqTransport,
        config=ZmqTransportConfig,
        summary="ZeroMQ ROUTER: one-frame JSON messages (AutoCore CommandMessage) from DEALER/REQ clients",
    )


@hookimpl
def register_triggers(registry: PluginRegistry) -> None:
    from bridgehost_ipc.trigger import ZmqTrigger, ZmqTriggerConfig

    registry.add(
        "zmq",
        ZmqTrigger,
        config=ZmqTriggerConfig,
        summary="runs the task named by a ZeroMQ request's topic and answers with its outcome",
    )


@hookimpl
def register_commands(commands: PluginCommands) -> None:
    from bridgehost_ipc.commands import call, configure_call

    commands.add(
        "call", call, configure=configure_call,
        help="send one request to a running host over ZeroMQ and print the response",
    )
