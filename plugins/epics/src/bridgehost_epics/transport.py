"""The ``pva`` transport: PV Access client settings shared by the EPICS
triggers and heartbeats, and optionally an embedded server (``serve = true``).

Without any ``pva`` transport, EPICS components use the environment
(``EPICS_PVA_ADDR_LIST``, ``EPICS_PVA_AUTO_ADDR_LIST``, ``EPICS_PVA_NAME_SERVERS``,
...), as every EPICS client does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from p4p.client import asyncio as pva_asyncio
from p4p.client import thread as pva_thread

from bridgehost.config import TransportConfig
from bridgehost.errors import InvalidField
from bridgehost_epics.server import EmbeddedServer

if TYPE_CHECKING:
    from bridgehost.host import Host

KIND = "pva"
USERS = {"trigger": "epics", "watchdog": "epics-heartbeat"}
"""The component kinds of this plugin that use a pva transport."""


class PvaTransportConfig(TransportConfig, kw_only=True):
    """``[[transports]] kind = "pva"``."""

    serve: bool = False
    """Serve the standard records of every EPICS trigger and heartbeat that
    uses this transport, on 127.0.0.1, instead of talking to an IOC."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    """TCP port of the embedded server; 0 picks a free one."""
    addr_list: list[str] | None = None
    """Client: hosts to search (``EPICS_PVA_ADDR_LIST``); absent: the environment's.
    Setting it turns ``EPICS_PVA_AUTO_ADDR_LIST`` off."""
    name_servers: list[str] | None = None
    """Client: ``host:port`` of PVA servers searched over TCP (``EPICS_PVA_NAME_SERVERS``)."""


class PvaTransport:
    """Client settings and, with ``serve``, the embedded server."""

    def __init__(self, config: PvaTransportConfig, host: Host):
        self.config = config
        self.name = config.name or config.kind
        self.server: EmbeddedServer | None = None
        if config.serve:
            prefixes = [c.prefix for c in _users(host) if resolve_name(host, c) == self.name]
            self.server = EmbeddedServer(prefixes, config.port)
        self.started = threading.Event()
        """Set once the embedded server (if any) answers; other threads wait on it."""

    async def start(self) -> None:
        if self.server is not None:
            self.server.start()
        self.started.set()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def client_conf(self) -> dict[str, str]:
        """Settings over the environment's for a p4p client context."""
        if self.server is not None:
            return self.server.client_conf()
        conf: dict[str, str] = {}
        if self.config.addr_list is not None:
            conf["EPICS_PVA_ADDR_LIST"] = " ".join(self.config.addr_list)
            conf["EPICS_PVA_AUTO_ADDR_LIST"] = "NO"
        if self.config.name_servers is not None:
            conf["EPICS_PVA_NAME_SERVERS"] = " ".join(self.config.name_servers)
        return conf


def _users(host: Host) -> list[Any]:
    return [c for c in host.config.triggers if c.kind == USERS["trigger"]] + [
        c for c in host.config.watchdogs if c.kind == USERS["watchdog"]
    ]


def resolve_name(host: Host, config: Any) -> str | None:
    """The name of the pva transport a component config uses, from the host's
    config (so it works before transports are built): its ``transport`` key,
    else the only pva transport, else None (the environment).

    Raises ``InvalidField("transport")`` when ``transport`` names no pva
    transport, or when it is empty and several pva transports exist.
    """
    names = [t.name or t.kind for t in host.config.transports if t.kind == KIND]
    if config.transport:
        if config.transport not in names:
            raise InvalidField(
                "transport",
                f"no pva transport named {config.transport!r} (pva transports: {', '.join(names) or 'none'})",
                'add a [[transports]] table with kind = "pva", or leave transport out to use the environment',
            )
        return config.transport
    if len(names) > 1:
        raise InvalidField("transport", f"several pva transports ({', '.join(names)}): say which",
                           "set transport = \"<name>\"")
    return names[0] if names else None


def find(host: Host, config: Any) -> PvaTransport | None:
    """The built transport a component uses (see ``resolve_name``)."""
    name = resolve_name(host, config)
    return None if name is None else host.transports[name]


def async_context(transport: PvaTransport | None) -> pva_asyncio.Context:
    """A new asyncio p4p client context for a component (call on the loop)."""
    conf = transport.client_conf() if transport else {}
    return pva_asyncio.Context("pva", conf=conf or None, useenv=True)


def thread_context(transport: PvaTransport | None) -> pva_thread.Context:
    """A new blocking p4p client context, for a component's own thread."""
    conf = transport.client_conf() if transport else {}
    return pva_thread.Context("pva", conf=conf or None, useenv=True)
