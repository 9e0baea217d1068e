"""bridgehost-ipc's pytest plugin (entry point ``pytest11``), as datasette
ships ``datasette/_pytest_plugin.py``: its fixture exists in any test
session of an environment that has bridgehost-ipc and pytest.

``bridgehost_client``
    ``bridgehost_client(host)`` connects a ZeroMQ ``Client`` to the ``zmq``
    transport of a host that ``bridgehost_host`` started (or to an endpoint
    string); closed at the end of the test. In the config text,
    ``{endpoint}`` is a free loopback TCP endpoint (``bridgehost.testing``).

Reference: ``docs/writing-plugins.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bridgehost.testing import RunningHost
    from bridgehost_ipc.client import Client


def zmq_endpoint(running: RunningHost) -> str:
    """The bound endpoint of the host's first ``zmq`` transport (a ``*`` port
    resolved). Raises ``LookupError`` if the host has none."""
    for config in running.host.config.transports:
        if config.kind == "zmq":
            return running.host.transports[config.name or config.kind].endpoint
    raise LookupError('the host has no zmq transport: add a [[transports]] kind = "zmq" table')


@pytest.fixture
def bridgehost_client() -> Iterator[Callable[[RunningHost | str], Client]]:
    """``bridgehost_client(host_or_endpoint) -> Client``; every client is
    closed after the test. Raises ``LookupError`` for a host without a
    ``zmq`` transport."""
    from bridgehost_ipc.client import Client  # here, not at plugin load: pytest loads plugins in every session

    clients: list[Client] = []

    def connect(target: RunningHost | str) -> Client:
        client = Client(target if isinstance(target, str) else zmq_endpoint(target))
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
