"""ZeroMQ endpoints: what can be bound, what is exposed, why a bind failed.

Checks that need no socket, so ``bridgehost check`` reports them before
anything starts and ``bridgehost run`` logs the same words at start.
Endpoint syntax: zmq_tcp(7) and zmq_ipc(7) (``https://libzmq.readthedocs.io``).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import resource

from bridgehost.errors import InvalidField


def check_endpoint(endpoint: str) -> None:
    """Raise ``InvalidField("endpoint", ...)`` for an endpoint that cannot
    be bound: a ``tcp://`` one needs ``host:port`` with a port of 1-65535 or
    ``*`` (zmq_tcp(7)), an ``ipc://`` path an existing folder (zmq_ipc(7);
    ``ipc://@name`` is Linux's abstract namespace)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme == "tcp":
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not (port == "*" or (port.isdigit() and 1 <= int(port) <= 65535)):
            raise InvalidField(
                "endpoint", f"{endpoint!r} is not tcp://HOST:PORT with a port of 1-65535 or *", "e.g. tcp://127.0.0.1:5555"
            )
    elif scheme == "ipc" and not rest.startswith("@"):
        folder = os.path.dirname(os.path.abspath(rest))
        if not os.path.isdir(folder):
            raise InvalidField("endpoint", f"the folder {folder} of {endpoint!r} does not exist", "create it first")


def is_local(endpoint: str) -> bool:
    """Whether only this machine can reach ``endpoint``: ``ipc://`` and
    ``inproc://``, or ``tcp://`` on a loopback address or ``localhost``.
    ``*``, an interface name or a hostname count as not local."""
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(endpoint: str, *, curve: bool) -> list[str]:
    """Why ``endpoint`` may let in more clients than meant: a non-local
    ``tcp://`` one without CURVE, an abstract ``ipc://@`` socket (no file
    permissions). Each a sentence with what to do; empty when none."""
    warnings = []
    if not curve and not is_local(endpoint):
        warnings.append(
            f"{endpoint} is reachable from other hosts and CURVE is off: any host that reaches it can run tasks "
            "(set curve_secret_key and curve_authorized_keys, see docs/security.md)"
        )
    if endpoint.startswith("ipc://@"):
        warnings.append(
            f"{endpoint} is an abstract socket: it has no file permissions, any process on this machine can connect"
        )
    return warnings


DESCRIPTOR_RESERVE = 256
"""File descriptors the host needs besides its connections: log files,
the analysis zygotes and their runs' pipes, the PV Access client."""


def descriptor_warnings(name: str, max_connections: int) -> list[str]:
    """A warning when ``max_connections`` plus ``DESCRIPTOR_RESERVE`` is past
    the number of files this process may open (``RLIMIT_NOFILE``, getrlimit(2)):
    connections up to the bound would leave the host no descriptor for its
    own work. Empty when it fits."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or max_connections + DESCRIPTOR_RESERVE <= soft:
        return []
    warning = (
        f"zmq transport {name!r}: max_connections = {max_connections}, but this process may open only {soft} files "
        f"(ulimit -n) and needs about {DESCRIPTOR_RESERVE} for its own work: raise the limit (systemd: LimitNOFILE=) "
        f"or lower max_connections to {max(1, soft - DESCRIPTOR_RESERVE)}"
    )
    return [warning]


def bind_hint(error_number: int | None) -> str:
    """What to do about a failed bind, by its errno (``zmq.ZMQError.errno``):
    the address in use, not this machine's, or a privileged port."""
    if error_number == errno.EADDRINUSE:
        return "another process is listening there: stop it or set another endpoint (a port of * picks a free one)"
    if error_number == errno.EADDRNOTAVAIL:
        return (
            "this machine has no such address: use one of its own addresses "
            "(127.0.0.1 for this machine only; `ip address` lists them)"
        )
    if error_number == errno.EACCES:
        return "permission denied: a port below 1024 needs privileges, and an ipc:// folder write access; use another"
    if error_number == errno.ENODEV:
        return "no such network interface: name one that exists (`ip link`), or use an address"
    return "check the endpoint (docs/ipc-protocol.md section 10)"
