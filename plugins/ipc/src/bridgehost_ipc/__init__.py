"""bridgehost-ipc: ZeroMQ transport, trigger and client for bridgehost.

- ``bridgehost_ipc.protocol``: the wire format (``CommandMessage``, ``MessageType``).
- ``bridgehost_ipc.client``: ``Client``, a synchronous DEALER for control loops and scripts.
- ``bridgehost_ipc.security``: CURVE keys and ``ipc://`` file modes (docs/security.md).
- ``bridgehost_ipc.transport`` / ``.trigger``: the ``zmq`` transport and trigger kinds
  (registered by ``bridgehost_ipc.plugin``); ``.routing``: its topic routing
  table; ``.endpoints``: endpoint checks, exposure warnings, bind errors.

Protocol reference: ``docs/ipc-protocol.md``.
"""

from typing import TYPE_CHECKING

from bridgehost.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs see
    from bridgehost_ipc.client import Client, SendQueueFull
    from bridgehost_ipc.protocol import CommandMessage, MessageType, ProtocolError
    from bridgehost_ipc.security import CurveError

# Resolved on first use (PEP 562), so importing a submodule such as the
# protocol or the plugin does not import pyzmq.
_EXPORTS = {
    "Client": "bridgehost_ipc.client",
    "SendQueueFull": "bridgehost_ipc.client",
    "CurveError": "bridgehost_ipc.security",
    "CommandMessage": "bridgehost_ipc.protocol",
    "MessageType": "bridgehost_ipc.protocol",
    "ProtocolError": "bridgehost_ipc.protocol",
}
__all__ = [  # the names of _EXPORTS, spelt out for type checkers and linters
    "Client", "CommandMessage", "CurveError", "MessageType", "ProtocolError", "SendQueueFull",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
