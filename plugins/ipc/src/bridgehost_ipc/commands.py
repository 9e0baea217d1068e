"""The commands of bridgehost-ipc, each talking to a running host over
ZeroMQ: ``bridgehost call`` sends one request and prints the response (the
envelope of ``docs/ipc-protocol.md``); ``bridgehost status`` prints the
answer to ``host.status``; ``bridgehost top`` shows it live
(``bridgehost_ipc.observe``).

Registered through the ``register_commands`` hook; pyzmq, the client and
rich are imported only when a command runs, so ``bridgehost --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import TYPE_CHECKING

from bridgehost_ipc.protocol import DEFAULT_ENDPOINT

if TYPE_CHECKING:
    from bridgehost_ipc.client import Client

ENDPOINT_ENV = "BRIDGEHOST_ENDPOINT"


def add_connection_options(parser: argparse.ArgumentParser, *, timeout_s: float) -> None:
    """``--endpoint``, ``--config``, ``--timeout`` (default ``timeout_s``) and
    the CURVE key files: how a command reaches the host (``connect``)."""
    parser.add_argument(
        "--endpoint", help=f"ZeroMQ endpoint (default: ${ENDPOINT_ENV}, --config's, else {DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--config", help="take the endpoint from this config's zmq transport")
    parser.add_argument(
        "--timeout", type=float, default=timeout_s, help=f"seconds to wait for the response (default {timeout_s:g})"
    )
    parser.add_argument("--curve-server-key", metavar="FILE", help="CURVE: the host's public certificate (docs/security.md)")
    parser.add_argument("--curve-client-key", metavar="FILE", help="CURVE: this client's certificate with its secret key")


def connect(args: argparse.Namespace, command: str) -> Client | None:
    """A client to the endpoint the options name (else ``$BRIDGEHOST_ENDPOINT``,
    else ``--config``'s zmq transport, else the default); ``None`` after
    printing why an endpoint or key file cannot be used (exit 2). Raises
    ConfigError for an unusable ``--config``."""
    from bridgehost_ipc.client import Client

    endpoint = args.endpoint or os.environ.get(ENDPOINT_ENV) or endpoint_from(args.config) or DEFAULT_ENDPOINT
    try:
        return Client(endpoint, curve_server_key=args.curve_server_key, curve_client_key=args.curve_client_key)
    except ValueError as e:  # an endpoint or CURVE key file that cannot be used
        print(f"bridgehost {command}: {e}", file=sys.stderr)
        return None


def configure_call(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="the task name, e.g. python.run_analysis")
    parser.add_argument("data", nargs="?", help="request data as a JSON object (default {})")
    add_connection_options(parser, timeout_s=30.0)


def call(args: argparse.Namespace) -> int:
    """Exit 0 when the response says success, 1 when it does not or none came
    in ``--timeout`` seconds, 2 for bad arguments (an empty or too long
    TOPIC, DATA not JSON, a ``--timeout`` that is not a positive finite
    number, an unusable endpoint or key file), 130 on Ctrl-C (SIGINT), quietly."""
    try:
        return _call(args)
    except KeyboardInterrupt:
        return 130  # the shell's code for SIGINT; the user knows why


def _call(args: argparse.Namespace) -> int:
    import msgspec

    from bridgehost_ipc.client import SendQueueFull
    from bridgehost_ipc.protocol import MAX_TOPIC_LENGTH

    if not 0 < len(args.topic) <= MAX_TOPIC_LENGTH:
        what = "empty" if not args.topic else f"{len(args.topic)} characters long, over {MAX_TOPIC_LENGTH}"
        print(f"bridgehost call: TOPIC is {what}; give the task name, e.g. python.run_analysis", file=sys.stderr)
        return 2
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        print(f"bridgehost call: --timeout {args.timeout} is not a positive number of seconds; e.g. --timeout 30",
              file=sys.stderr)
        return 2
    try:
        data = json.loads(args.data) if args.data is not None else {}
    except json.JSONDecodeError as e:
        print(f"bridgehost call: DATA is not valid JSON ({e}); quote it, e.g. '{{\"run_id\": \"r1\"}}'", file=sys.stderr)
        return 2
    client = connect(args, "call")
    if client is None:
        return 2
    with client:
        try:
            response = client.call(args.topic, data, timeout_s=args.timeout)
        except (TimeoutError, SendQueueFull) as e:
            print(f"bridgehost call: {e}", file=sys.stderr)
            return 1
    print(msgspec.json.format(msgspec.json.encode(response), indent=2).decode())
    return 0 if response.success else 1


def endpoint_from(path: str | None) -> str | None:
    """The endpoint of the first ``zmq`` transport in the config at ``path``
    (``None`` without a path or such a transport). Raises ConfigError."""
    if not path:
        return None
    from bridgehost.config import load

    config, _ = load(path)
    for transport in config.transports:
        endpoint = getattr(transport, "endpoint", None)
        if transport.kind == "zmq" and endpoint:
            return endpoint
    return None


def configure_status(parser: argparse.ArgumentParser) -> None:
    add_connection_options(parser, timeout_s=5.0)
    parser.add_argument("--json", action="store_true", help="print the status as the host sent it (JSON)")


def status(args: argparse.Namespace) -> int:
    """Exit 0 with the status printed, 1 when the host does not answer, 2
    for an unusable endpoint or key file."""
    from bridgehost_ipc.observe import StatusError, print_status

    client = connect(args, "status")
    if client is None:
        return 2
    with client:
        try:
            print_status(client, args.timeout, as_json=args.json)
        except StatusError as e:
            print(f"bridgehost status: {e}", file=sys.stderr)
            return 1
    return 0


def configure_top(parser: argparse.ArgumentParser) -> None:
    add_connection_options(parser, timeout_s=1.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default 1)")


def top(args: argparse.Namespace) -> int:
    """Until ``q`` or Ctrl-C: exit 0; 2 for an unusable endpoint or key file."""
    from bridgehost_ipc.observe import top as run_top

    client = connect(args, "top")
    if client is None:
        return 2
    with client:
        return run_top(client, interval_s=args.interval, timeout_s=args.timeout)
