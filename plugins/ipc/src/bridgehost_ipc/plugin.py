"""bridgehost plugin ``ipc``: the ``zmq`` transport and trigger kinds, and
the ``bridgehost call``, ``status`` and ``top`` commands.

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
    from bridgehost_ipc.commands import call, configure_call, configure_status, configure_top, status, top

    commands.add(
        "call", call, configure=configure_call,
        help="send one request to a running host over ZeroMQ and print the response",
    )
    commands.add(
        "status", status, configure=configure_status,
        help="show what a running host is doing: tasks, running jobs, components, recent failures",
    )
    commands.add("top", top, configure=configure_top, help="a live view of a running host (host.status every second); q quits")


@hookimpl
def register_metrics(metrics, host) -> None:
    from bridgehost_ipc.metrics import declare

    declare(metrics, host)
