"""bridgehost-ipc: ZeroMQ transport, trigger and client for bridgehost.

- ``bridgehost_ipc.protocol``: the wire format (``CommandMessage``, ``MessageType``).
- ``bridgehost_ipc.client``: ``Client``, a synchronous DEALER for control loops and scripts.
- ``bridgehost_ipc.security``: CURVE keys and ``ipc://`` file modes (docs/security.md).
- ``bridgehost_ipc.transport`` / ``.trigger``: the ``zmq`` transport and trigger kinds
  (registered by ``bridgehost_ipc.plugin``); ``.routing``: its topic routing
  table; ``.endpoints``: endpoint checks, exposure warnings, bind errors.

Protocol reference: ``docs/ipc-protocol.md``.
"""

from bridgehost_ipc.client import Client, SendQueueFull
from bridgehost_ipc.security import CurveError
from bridgehost_ipc.protocol import CommandMessage, MessageType, ProtocolError

__all__ = ["Client", "CommandMessage", "CurveError", "MessageType", "ProtocolError", "SendQueueFull"]
