"""The bridgehost IPC wire format: one JSON object per ZeroMQ frame.

Every message, in both directions, is a ``CommandMessage`` shaped like
AutoCore's envelope, so a Rust control program can (de)serialize it with
serde::

    {"transaction_id": 7, "timecode": 1767225600000, "topic": "python.run_analysis",
     "message_type": "request", "data": {"run_id": "r1"}, "success": true, "error_message": ""}

The full specification, for implementing a client in another language, is
``docs/ipc-protocol.md``. Nothing here ever unpickles: frames are JSON only.
"""

from __future__ import annotations

import enum
import re
import sys
from typing import Annotated, Any

import msgspec

from bridgehost.jobs import Status, now_ms
from bridgehost.text import cut_middle
from bridgehost.validation import validation_issue

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
"""Where clients connect when nothing else is said (the example configs bind it)."""

PROTOCOL_VERSION = 1
"""Bumped on an incompatible change of the wire format; ``host.ping`` reports it."""

MAX_TRANSACTION_ID = 2**32 - 1
"""Transaction ids are u32. 0 is reserved: the host uses it in an error
response to a frame whose transaction id could not be read."""

TransactionId = Annotated[int, msgspec.Meta(ge=0, le=MAX_TRANSACTION_ID)]
Timecode = Annotated[int, msgspec.Meta(ge=0)]
MAX_TOPIC_LENGTH = 256
Topic = Annotated[str, msgspec.Meta(max_length=MAX_TOPIC_LENGTH)]


class MessageType(enum.StrEnum):
    """What a message is. Clients send ``request`` and ``heartbeat``; the host
    sends ``response`` (one per request), ``heartbeat`` (the answer to one)
    and ``broadcast`` (unsolicited)."""

    REQUEST = "request"
    RESPONSE = "response"
    BROADCAST = "broadcast"
    HEARTBEAT = "heartbeat"


class CommandMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message on the wire (one JSON object in one frame).

    Fields are encoded in this order; unknown fields in a received object are
    ignored so either side can add fields later.
    """

    transaction_id: TransactionId
    """u32 chosen by the client (counting up from 1, skipping 0); a response
    carries its request's id."""
    timecode: Timecode
    """When the message was created: integer milliseconds since the Unix epoch (UTC)."""
    topic: Topic
    """What the message is about, ``"domain.name"``: for a request, the task
    or built-in (``host.ping``) it asks for; a response echoes it."""
    message_type: MessageType
    data: Any = msgspec.field(default_factory=dict)
    """Any JSON value; a request to a task sends an object (its parameters)."""
    success: bool = True
    """In a response: whether the request succeeded. Requests send ``true``."""
    error_message: str = ""
    """In a failed response: what went wrong and what to do. Else empty."""

    def reply(self, data: Any = None) -> CommandMessage:
        """A successful response to this request, carrying ``data`` (None -> ``{}``)."""
        return CommandMessage(
            transaction_id=self.transaction_id,
            timecode=now_ms(),
            topic=self.topic,
            message_type=MessageType.RESPONSE,
            data={} if data is None else data,
        )

    def fail(
        self, error_message: str, *, status: Status = Status.REJECTED, data: dict[str, Any] | None = None
    ) -> CommandMessage:
        """A failed response to this request.

        ``data`` becomes ``{**data, "status": status.name, "status_code": int(status)}``:
        every failed response says which ``bridgehost.Status`` it is, so a
        client can tell "retry later" (BUSY) from "fix the request" (REJECTED).
        """
        return error_response(self.transaction_id, self.topic, error_message, status=status, data=data)


def new_request(
    transaction_id: int, topic: str, data: Any = None, *, message_type: MessageType = MessageType.REQUEST
) -> CommandMessage:
    """A client message (``request`` or ``heartbeat``) stamped now; ``data`` None -> ``{}``."""
    return CommandMessage(
        transaction_id=transaction_id,
        timecode=now_ms(),
        topic=topic,
        message_type=message_type,
        data={} if data is None else data,
    )


def error_response(
    transaction_id: int,
    topic: str,
    error_message: str,
    *,
    status: Status = Status.REJECTED,
    data: dict[str, Any] | None = None,
) -> CommandMessage:
    """A failed ``response`` (see ``CommandMessage.fail``); usable when there
    is no decoded request to answer (``transaction_id`` 0 if unknown)."""
    # status last: a task's own "status" key must not hide the real one
    return CommandMessage(
        transaction_id=transaction_id,
        timecode=now_ms(),
        topic=topic,
        message_type=MessageType.RESPONSE,
        data={**(data or {}), "status": status.name, "status_code": int(status)},
        success=False,
        error_message=error_message,
    )


class ProtocolError(ValueError):
    """A frame is not a valid message.

    ``str()`` / ``message`` says what was wrong and what to send instead.
    ``transaction_id`` and ``topic`` are what could be recovered from the
    frame (0 and "" when nothing could), for the error response.
    """

    def __init__(self, message: str, transaction_id: int = 0, topic: str = ""):
        super().__init__(message)
        self.message = message
        self.transaction_id = transaction_id
        self.topic = topic


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CommandMessage)
_FIELDS = "transaction_id, timecode, topic and message_type"
_SEE = "see docs/ipc-protocol.md"
_TID = re.compile(rb'"transaction_id"\s*:\s*(\d{1,10})(?![\d.eE])')
SCAN_BYTES = 256
"""How much of an unparseable frame is scanned for its transaction id."""


def encode(message: CommandMessage) -> bytes:
    """``message`` as one JSON frame (UTF-8 bytes). Raises ``TypeError`` or
    ``msgspec.EncodeError`` if ``data`` holds a value JSON cannot represent."""
    return _encoder.encode(message)


def decode(frame: bytes | bytearray | memoryview) -> CommandMessage:
    """Parse one frame into a ``CommandMessage``.

    Raises ``ProtocolError`` if the frame is not UTF-8 JSON (or nested
    deeper than Python's recursion limit lets msgspec parse), not an object,
    lacks one of the required fields (transaction_id, timecode, topic,
    message_type) or has a field of the wrong type or range (a topic is at
    most ``MAX_TOPIC_LENGTH`` characters).
    """
    try:
        return _decoder.decode(frame)
    except msgspec.ValidationError as e:
        tid, topic = recover_ids(frame)
        raise ProtocolError(_explain(e), tid, topic) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        # msgspec raises UnicodeDecodeError, not DecodeError, for bad UTF-8 inside a string
        raise ProtocolError(
            f"the frame is not valid JSON ({e}); send one UTF-8 JSON object per frame with {_FIELDS}; {_SEE}",
            scan_transaction_id(frame),
        ) from None
    except RecursionError:  # msgspec recurses once per level, within Python's recursion limit
        raise ProtocolError(
            f"the frame is nested too deeply to parse (arrays or objects inside each other about "
            f"{sys.getrecursionlimit()} levels deep); flatten its data; {_SEE}",
            scan_transaction_id(frame),
        ) from None


def recover_ids(frame: bytes | bytearray | memoryview) -> tuple[int, str]:
    """The ``(transaction_id, topic)`` of a JSON object that is not a valid
    message, so its error response can still be matched; ``(0, "")`` where
    a field is absent or unusable."""
    try:
        obj = msgspec.json.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return scan_transaction_id(frame), ""
    if not isinstance(obj, dict):
        return 0, ""
    tid = obj.get("transaction_id")
    topic = obj.get("topic")
    if not isinstance(topic, str) or len(topic) > MAX_TOPIC_LENGTH:
        topic = ""
    if isinstance(tid, int) and not isinstance(tid, bool) and 0 <= tid <= MAX_TRANSACTION_ID:
        return tid, topic
    return 0, topic


def scan_transaction_id(frame: bytes | bytearray | memoryview) -> int:
    """Best effort for a frame that cannot be parsed (oversized, truncated):
    the first ``"transaction_id": N`` in its first ``SCAN_BYTES`` bytes, else 0."""
    m = _TID.search(bytes(frame[:SCAN_BYTES]))
    if m is None:
        return 0
    tid = int(m.group(1))
    return tid if tid <= MAX_TRANSACTION_ID else 0


MAX_ERROR_CHARS = 65536
"""The longest ``error_message`` (and string in a failed response's ``data``,
such as ``traceback``) the host sends; longer ones are cut in the middle."""


def _explain(error: msgspec.ValidationError) -> str:
    """Turn msgspec's validation message into one that says what to send."""
    issue = validation_issue(error)
    message, path = issue.message, issue.key
    if not path:
        if got := re.fullmatch(r"Expected `object`, got `(\w+)`", message):
            kind = got.group(1)
            return f"the frame is a JSON {kind}, not an object; a message is a JSON object with {_FIELDS}; {_SEE}"
        if missing := issue.missing_field:
            return f"field `{missing}` is missing; every message has {_FIELDS}; {_SEE}"
        return f"{message}; {_SEE}"
    if bad := re.fullmatch(r"Invalid enum value (.*)", message, re.DOTALL):
        allowed = ", ".join(t.value for t in MessageType)
        return f"field `{path}` is {cut_middle(bad.group(1), 64, inline=True)}; expected one of: {allowed}; {_SEE}"
    return f"field `{path}`: {issue.expected}; {_SEE}"
