"""``bridgehost call``: send one request to a running host over ZeroMQ and
print the response (the envelope of ``docs/ipc-protocol.md``).

Registered through the ``register_commands`` hook; pyzmq and the client are
imported only when the command runs, so ``bridgehost --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bridgehost_ipc.protocol import DEFAULT_ENDPOINT

ENDPOINT_ENV = "BRIDGEHOST_ENDPOINT"


def configure_call(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="the task name, e.g. python.run_analysis")
    parser.add_argument("data", nargs="?", help="request data as a JSON object (default {})")
    parser.add_argument(
        "--endpoint", help=f"ZeroMQ endpoint (default: ${ENDPOINT_ENV}, --config's, else {DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--config", help="take the endpoint from this config's zmq transport")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the response (default 30)")
    parser.add_argument("--curve-server-key", metavar="FILE", help="CURVE: the host's public certificate (docs/security.md)")
    parser.add_argument("--curve-client-key", metavar="FILE", help="CURVE: this client's certificate with its secret key")


def call(args: argparse.Namespace) -> int:
    """Exit 0 when the response says success, 1 when it does not or none came
    in ``--timeout`` seconds, 2 for bad arguments (DATA not JSON, an unusable
    endpoint or key file)."""
    import msgspec

    from bridgehost_ipc.client import Client, SendQueueFull

    try:
        data = json.loads(args.data) if args.data is not None else {}
    except json.JSONDecodeError as e:
        print(f"bridgehost call: DATA is not valid JSON ({e}); quote it, e.g. '{{\"run_id\": \"r1\"}}'", file=sys.stderr)
        return 2
    endpoint = args.endpoint or os.environ.get(ENDPOINT_ENV) or endpoint_from(args.config) or DEFAULT_ENDPOINT
    try:
        client = Client(endpoint, curve_server_key=args.curve_server_key, curve_client_key=args.curve_client_key)
    except ValueError as e:  # an endpoint or CURVE key file that cannot be used
        print(f"bridgehost call: {e}", file=sys.stderr)
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
