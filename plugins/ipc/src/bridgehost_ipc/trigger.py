"""The ``zmq`` trigger: a request's topic names the task to run.

With ``[[triggers]] kind = "zmq"`` every request whose topic no other
handler claims becomes ``Request(task=topic, params=data, source="zmq",
ref=str(transaction_id))`` on the host, and the job's ``Outcome`` goes back as
the response:

- SUCCESS: ``success = true``, ``data`` = the task's result (``null`` if it returned None);
- otherwise: ``success = false``, ``error_message`` = ``outcome.error`` and
  ``data`` = the outcome's data (when a dict, e.g. ``traceback``) plus
  ``status`` (the ``Status`` name), ``status_code`` (its number) and ``job_id``.

Each request carries the room its result has in the response
(``Request.reply_limit``: ``max_frame_bytes`` less the response's envelope),
so a result too large for it ends the job CRASH where its outcome is
decided, the same in the log, in ``job_finished`` and in the response.

Unknown tasks, full queues and a stopping host are answered by the host
itself (REJECTED naming the tasks, BUSY, REJECTED), so the trigger needs no
list of tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost.config import TriggerConfig
from bridgehost.errors import InvalidField
from bridgehost.jobs import Outcome, ReplyLimit, Request, Status
from bridgehost_ipc.protocol import CommandMessage, encode
from bridgehost_ipc.transport import ZmqTransport, requester

if TYPE_CHECKING:
    from bridgehost.host import Host


class ZmqTriggerConfig(TriggerConfig, kw_only=True):
    """``[[triggers]] kind = "zmq"``."""

    transport: str = "zmq"
    """The name of the ``zmq`` transport whose requests start jobs (a
    transport's name is its ``name``, else its kind)."""


class ZmqTrigger:
    """Routes every otherwise-unhandled request topic to the host's tasks.

    The factory installs the catch-all handler ``"*"`` on the transport at
    once (transports are built before triggers, started after), so no request
    is ever answered "unknown topic" while the host starts. It has no
    ``stop()``: the handler stays so that jobs finishing during the host's
    drain still get their responses, and requests arriving then are answered
    by the host (REJECTED, "stopping").
    """

    def __init__(self, config: ZmqTriggerConfig, host: Host):
        self.config = config
        self.host = host
        transport = host.transports.get(config.transport)
        if transport is None:
            names = ", ".join(sorted(host.transports)) or "none"
            raise InvalidField(
                "transport",
                f"no transport named {config.transport!r} (transports: {names})",
                'add a [[transports]] table with kind = "zmq" (its name defaults to its kind) '
                "or set `transport` to the name of one",
            )
        if not isinstance(transport, ZmqTransport):
            raise InvalidField(
                "transport",
                f"transport {config.transport!r} is a {type(transport).__name__}, not a zmq transport",
                'name a [[transports]] table with kind = "zmq"',
            )
        try:
            transport.add_handler("*", self.handle)
        except ValueError:
            raise InvalidField(
                "transport",
                f"zmq transport {config.transport!r} already has a zmq trigger",
                "configure one zmq trigger per zmq transport",
            ) from None
        self.transport = transport

    async def handle(self, message: CommandMessage) -> CommandMessage:
        """Run the task named by ``message.topic`` and answer with its outcome."""
        if not isinstance(message.data, dict):
            return message.fail(
                f"data of a request for task {message.topic!r} must be a JSON object (its parameters), "
                f"got {_json_type(message.data)}; send {{}} for none"
            )
        request = Request(
            task=message.topic,
            params=message.data,
            source="zmq",
            ref=str(message.transaction_id),
            reply_limit=self._room(message),
        )
        # A client gone before its queued job starts withdraws it (CANCELLED, never run): the
        # transport cancels this await when it sees the disconnect, and the host asks `wanted` first.
        peer = requester.get(None)
        wanted = None if peer is None else (lambda: self.transport.connected(peer))
        outcome = await self.host.submit(request, wanted=wanted)
        return response_for(message, outcome)

    def reply_limit(self, task: str) -> ReplyLimit:
        """The limit of a reply for any task (``bridgehost.components.ReplyBounded``):
        the transport's ``max_frame_bytes``."""
        return ReplyLimit(self.transport.config.max_frame_bytes, self._setting)

    @property
    def _setting(self) -> str:
        return f"max_frame_bytes of zmq transport {self.config.transport!r}"

    def _room(self, message: CommandMessage) -> ReplyLimit:
        """The room a result has in the response to ``message``: the frame
        limit less the response's envelope (its other fields, as encoded)."""
        envelope = len(encode(message.reply(None))) - len(b"null") + _TIMECODE_SLACK
        return ReplyLimit(self.transport.config.max_frame_bytes - envelope, self._setting)


_TIMECODE_SLACK = 8
"""Bytes kept free in case the transport's fresh timecode has more digits."""


def response_for(message: CommandMessage, outcome: Outcome) -> CommandMessage:
    """The response to ``message`` that reports ``outcome`` (see the module doc)."""
    if outcome.status is Status.SUCCESS:
        return message.reply(outcome.data)
    details = dict(outcome.data) if isinstance(outcome.data, dict) else {}
    details["job_id"] = outcome.job_id
    return message.fail(outcome.error or outcome.status.name, status=outcome.status, data=details)


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
