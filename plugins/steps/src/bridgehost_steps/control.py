"""The ``steps.*`` ZeroMQ topics: a thin adapter from request messages to the
``StepsController`` API, and its announcements to broadcasts.

The transport is duck-typed (``add_handler(pattern, handler)`` and ``async
broadcast(topic, data)``; handlers get a message with ``.data``, ``.reply(data)``
and ``.fail(error, status=..., data=...)``), which bridgehost-ipc's ``zmq``
transport provides: this plugin never imports bridgehost-ipc.

Requests (``data`` of the message):

=================  ==========================================================
topic              data
=================  ==========================================================
``steps.start``    ``{"task", "data"?, "point"?, "job_id"?}``
``steps.pause``    ``{"job_id"}`` (also resume, halt, skip)
``steps.jump``     ``{"job_id", "point"}``
``steps.swap``     ``{"job_id", "data"}``
``steps.retry``    ``{"job_id", "data"?, "point"?}``
``steps.send``     ``{"job_id", "message"}`` (for ``context.receive()``)
``steps.status``   ``{"job_id"}``
``steps.list``     ``{"ended"?: bool}``
=================  ==========================================================

An accepted request answers ``success: true`` with the ``Answer`` (``job_id``,
``control``, ``accepted``, ``state``, ``detail``); a refused one answers
``success: false``, ``error_message`` = the reason, status REJECTED (BUSY when
the host refused a start because the task's queue is full).
"""

from __future__ import annotations

from typing import Any

import msgspec

from bridgehost.jobs import Status
from bridgehost_steps.controller import TOPIC_PREFIX, StepsController
from bridgehost_steps.machine import Answer, Control


def attach(controller: StepsController, transport: Any) -> None:
    """Route ``steps.*`` on ``transport`` to ``controller`` and broadcast its
    announcements there (once per transport). Raises ``TypeError`` if the
    transport cannot carry requests and broadcasts."""
    if not (callable(getattr(transport, "add_handler", None)) and callable(getattr(transport, "broadcast", None))):
        raise TypeError(
            f"transport {type(transport).__name__} cannot carry steps control (it needs add_handler and broadcast); "
            'set control_transport to a transport of kind "zmq"'
        )
    if any(routed is transport for routed in controller.routed):
        return
    transport.add_handler(TOPIC_PREFIX + "*", ZmqControl(controller).handle)
    controller.routed.append(transport)
    controller.broadcast_to(transport)


class _Job(msgspec.Struct, forbid_unknown_fields=True):
    job_id: str


class _Jump(msgspec.Struct, forbid_unknown_fields=True):
    job_id: str
    point: Any


class _Swap(msgspec.Struct, forbid_unknown_fields=True):
    job_id: str
    data: Any


class _Retry(msgspec.Struct, forbid_unknown_fields=True):
    job_id: str
    data: Any = msgspec.UNSET
    point: Any = msgspec.UNSET


class _Send(msgspec.Struct, forbid_unknown_fields=True):
    job_id: str
    message: Any


class _Start(msgspec.Struct, forbid_unknown_fields=True):
    task: str
    data: Any = None
    point: Any = None
    job_id: str | None = None


class _List(msgspec.Struct, forbid_unknown_fields=True):
    ended: bool = False


_SHAPES: dict[str, type[msgspec.Struct]] = {
    "start": _Start,
    "pause": _Job,
    "resume": _Job,
    "halt": _Job,
    "skip": _Job,
    "jump": _Jump,
    "swap": _Swap,
    "retry": _Retry,
    "send": _Send,
    "status": _Job,
    "list": _List,
}


class ZmqControl:
    """The handler of ``steps.*`` requests on one transport."""

    def __init__(self, controller: StepsController):
        self.controller = controller

    async def handle(self, message: Any) -> Any:
        name = message.topic[len(TOPIC_PREFIX) :]
        shape = _SHAPES.get(name)
        if shape is None:
            return message.fail(f"unknown steps topic {message.topic!r}; the steps topics are {_topics()}")
        try:
            args: Any = msgspec.convert({} if message.data is None else message.data, shape)  # one of _SHAPES
        except msgspec.ValidationError as e:
            fields = ", ".join(shape.__struct_fields__)
            return message.fail(f"bad data for {message.topic} ({e}); it takes an object with: {fields}")
        if name == "status":
            status = self.controller.status(args.job_id)
            if status is None:
                return message.fail(self.controller.unknown_reason(args.job_id))
            return message.reply(msgspec.to_builtins(status))
        if name == "list":
            return message.reply({"jobs": msgspec.to_builtins(self.controller.list(ended=args.ended))})
        if name == "start":
            answer, future = self.controller.start(
                args.task, data=args.data, point=args.point, job_id=args.job_id, source="zmq",
                ref=str(message.transaction_id),
            )
            if not answer.accepted and future is not None:
                return _answer(message, answer, future.result().status)
            return _answer(message, answer)
        if name == "send":
            return _answer(message, self.controller.send(args.job_id, args.message))
        kwargs: dict[str, Any] = {}
        if name == "retry":
            kwargs = {k: getattr(args, k) for k in ("data", "point") if getattr(args, k) is not msgspec.UNSET}
            return _answer(message, self.controller.retry(args.job_id, **kwargs))
        if name == "jump":
            kwargs = {"point": args.point}
        elif name == "swap":
            kwargs = {"data": args.data}
        return _answer(message, self.controller.control(args.job_id, Control(name), **kwargs))


def _answer(message: Any, answer: Answer, status: Status = Status.REJECTED) -> Any:
    data = answer.to_builtins()
    if answer.accepted:
        return message.reply(data)
    return message.fail(answer.reason, status=status, data=data)


def _topics() -> str:
    return ", ".join(TOPIC_PREFIX + name for name in _SHAPES)
