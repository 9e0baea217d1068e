"""Who may talk to the ``zmq`` transport: CURVE keys and ``ipc://`` file modes.

- CURVE (ZeroMQ RFC 26, ``https://rfc.zeromq.org/spec/26/``) encrypts a TCP
  connection and proves the client holds a secret key; the host accepts only
  clients whose public key is in a folder of certificates, checked by a ZAP
  handler (RFC 27) on the transport's own ZeroMQ context. Keys are the
  certificate files ``zmq.auth.create_certificates`` writes: ``NAME.key``
  (public) and ``NAME.key_secret`` (public and secret).
- An ``ipc://`` endpoint is a socket file; connecting to it needs write
  permission, so the transport sets its mode (owner-only by default).

Every refusal is logged as a WARNING on ``bridgehost.ipc`` (at most
``RefusalLog.BURST`` lines per ``RefusalLog.WINDOW_S`` for each kind of
refusal; the next line says how many were left out).
Reference: ``docs/security.md``.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

from bridgehost.errors import InvalidField
from bridgehost.logs import RateLimitedLog

log = logging.getLogger("bridgehost.ipc")

__all__ = [
    "CurveError", "CurveKeys", "ServerCurve", "apply_client_curve", "load_keypair", "secure_ipc_file", "server_curve",
]


class CurveError(ValueError):
    """A CURVE key file or folder is missing, unreadable or not a certificate."""


@dataclass(frozen=True)
class CurveKeys:
    """A key pair as z85 bytes (40 characters each); ``secret`` is None for a
    public certificate."""

    public: bytes
    secret: bytes | None


def load_keypair(path: str | os.PathLike[str], *, need_secret: bool) -> CurveKeys:
    """Read a ``zmq.auth`` certificate file.

    ``need_secret``: the file must hold the secret key too (a ``.key_secret``
    file). Raises ``CurveError`` naming the file and how to make one.
    """
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise CurveError(
            f"cannot read the CURVE certificate {str(path)!r}: {e}; create a key pair with "
            "python -c \"import zmq.auth; zmq.auth.create_certificates('keys', 'NAME')\""
        ) from None
    if need_secret and secret is None:
        raise CurveError(
            f"{str(path)!r} holds only a public key; give the .key_secret file of the pair "
            "(the .key file is the public half, for the other side)"
        )
    return CurveKeys(public, secret)


def load_authorized(folder: str | os.PathLike[str]) -> int:
    """How many public certificates (``*.key``) the folder holds. Raises
    ``CurveError`` if it is no folder or holds none: every client would be refused."""
    try:
        count = len(zmq.auth.load_certificates(folder))
    except (OSError, ValueError) as e:
        raise CurveError(f"cannot read the authorized keys folder {str(folder)!r}: {e}") from None
    if count == 0:
        raise CurveError(
            f"the authorized keys folder {str(folder)!r} holds no public certificate (*.key): "
            "copy each client's NAME.key there"
        )
    return count


def apply_client_curve(
    sock: zmq.Socket, server_key: str | os.PathLike[str], client_key: str | os.PathLike[str]
) -> None:
    """Make ``sock`` a CURVE client: ``server_key`` is the host's public
    certificate (``server.key``), ``client_key`` this client's certificate
    with its secret (``client.key_secret``). Call before ``connect``.
    Raises ``CurveError``."""
    server = load_keypair(server_key, need_secret=False)
    client = load_keypair(client_key, need_secret=True)
    sock.curve_serverkey = server.public
    sock.curve_publickey = client.public
    sock.curve_secretkey = client.secret


class RefusalLog:
    """WARNING lines for refused clients: at most ``BURST`` per ``WINDOW_S``
    seconds for each kind of refusal (``bridgehost.logs.RateLimitedLog``),
    so a client that retries in a loop cannot flood the log nor hide another
    kind of refusal."""

    BURST = 10
    WINDOW_S = 60.0

    def __init__(self, transport_name: str):
        self.name = transport_name
        self.lines = RateLimitedLog(log, interval_s=self.WINDOW_S, burst=self.BURST)

    @property
    def total(self) -> int:
        """Every refusal since start, logged or not."""
        return self.lines.total

    def refused(self, kind: str, why: str) -> None:
        self.lines.warning(kind, "zmq transport %r: refused a client: %s", self.name, why)


class _Authenticator(AsyncioAuthenticator):
    """pyzmq's ZAP handler, reporting each refusal with the peer's address."""

    def __init__(self, context: zmq.asyncio.Context, refusals: RefusalLog):
        super().__init__(context, log=logging.getLogger("bridgehost.ipc.zap"))
        self.refusals = refusals
        self._peer = ""
        self._key = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # Requests are handled one at a time (pyzmq awaits each), so this is the current one.
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        self._key = z85.encode(msg[6]).decode() if len(msg) > 6 and len(msg[6]) == 32 else ""
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous"):
        if status_code != b"200":
            reason = status_text.decode("utf-8", "replace")
            key = f" with public key {self._key}" if self._key else ""
            self.refusals.refused("key", f"{self._peer}{key}: {reason} (not in the authorized keys folder)")
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


class ServerCurve:
    """The CURVE side of one ROUTER: its keys, the ZAP handler, and the
    handshake failures the ZAP handler never sees (a client without CURVE),
    which the transport's socket monitor hands to ``on_monitor_event``."""

    MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    """The socket monitor events (zmq_socket_monitor(3)) ``on_monitor_event`` reads."""

    def __init__(self, keys: CurveKeys, authorized: Path, count: int, transport_name: str):
        self.keys = keys
        self.authorized = authorized
        self.count = count
        self.refusals = RefusalLog(transport_name)
        self._auth: _Authenticator | None = None

    def apply(self, ctx: zmq.asyncio.Context, sock: zmq.asyncio.Socket) -> None:
        """Before ``bind``: start the ZAP handler on ``ctx`` and make ``sock`` a CURVE server."""
        self._auth = _Authenticator(ctx, self.refusals)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self.authorized))
        sock.curve_secretkey = self.keys.secret
        sock.curve_publickey = self.keys.public
        sock.curve_server = True

    def on_monitor_event(self, event: int, value: int) -> None:
        """A socket monitor event of the ROUTER: a failed handshake is a refusal."""
        if event & self.MONITOR_EVENTS:
            why = _handshake_failure(event, value)
            self.refusals.refused(why, why)  # a handful of fixed texts: each its own kind

    async def stop(self, sock: zmq.asyncio.Socket) -> None:
        """Before closing ``sock`` and terminating the context."""
        if self._auth is not None:
            self._auth.stop()


_NO_CURVE = "it does not use CURVE (security mechanism mismatch); give it the keys"
_FAILURES: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: _NO_CURVE,
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: (
        "its CURVE handshake does not decrypt: it uses another host public key than this host's"
    ),
}


def _handshake_failure(event: int, value: int) -> str:
    """Why a handshake failed, from a socket monitor event (libzmq ``zmq_socket_monitor``)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        # The client hung up first: it found the mismatch before this side did.
        return "it broke off the handshake (it does not use CURVE, or not this host's key)"
    return _FAILURES.get(value, f"CURVE handshake failed (ZMTP protocol error {value:#x})")


def secure_ipc_file(endpoint: str, mode: int) -> str | None:
    """Set the mode of the socket file of a bound ``ipc://`` endpoint; the
    path, or None for another scheme or a Linux abstract socket (``ipc://@name``,
    which has no file and no permissions: anyone on the machine may connect)."""
    scheme, _, path = endpoint.partition("://")
    if scheme != "ipc" or path.startswith("@"):
        return None
    os.chmod(path, stat.S_IMODE(mode))
    return path


def server_curve(
    secret_key: str | None, authorized_keys: str | None, base_dir: Path, transport_name: str
) -> ServerCurve | None:
    """The CURVE setup a ``zmq`` transport's config asks for (its
    ``curve_secret_key`` and ``curve_authorized_keys``, relative to
    ``base_dir``), or None when neither is set. Raises ``InvalidField``
    naming the key when only one is set or its files are unusable, so
    ``bridgehost check`` reports it."""
    if secret_key is None and authorized_keys is None:
        return None
    if secret_key is None or authorized_keys is None:
        given, missing = ("curve_secret_key", "curve_authorized_keys") if authorized_keys is None else (
            "curve_authorized_keys", "curve_secret_key")
        raise InvalidField(missing, f"{given} is set but {missing} is not", "CURVE needs both; see docs/security.md")
    folder = base_dir / Path(authorized_keys).expanduser()
    try:
        keys = load_keypair(base_dir / Path(secret_key).expanduser(), need_secret=True)
    except CurveError as e:
        raise InvalidField("curve_secret_key", str(e)) from None
    try:
        count = load_authorized(folder)
    except CurveError as e:
        raise InvalidField("curve_authorized_keys", str(e)) from None
    return ServerCurve(keys, folder, count, transport_name)
