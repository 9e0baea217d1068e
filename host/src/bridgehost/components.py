"""What a component may implement, as ``typing.Protocol``s.

A ``register_*`` hook's factory, ``factory(config, host)``, returns the
component: any object. The host calls what it has of the methods below, so
each is a protocol of its own; a type checker (mypy) checks a component
declared against them, and ``isinstance(obj, Checkable)`` tells at run time
(``runtime_checkable``: by method name only, not by signature). The hooks'
contracts: ``docs/hooks.md``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.jobs import Job, ReplyLimit, Status


@runtime_checkable
class Startable(Protocol):
    """A component with something to start (a socket to bind, a server, a
    pool of processes). Called before the host accepts requests, in the
    order tasks, watchdogs, transports, triggers; raising stops the host's
    start (``StartError`` naming the component)."""

    def start(self) -> Awaitable[None] | None: ...


@runtime_checkable
class Stoppable(Protocol):
    """A component with something to release. Called once every accepted
    job has settled, in reverse order (triggers first); an exception is
    logged and the other components still stop."""

    def stop(self) -> Awaitable[None] | None: ...


@runtime_checkable
class Runnable(Protocol):
    """A task: ``run(job)`` returns the result (usually a dict: the
    ``Outcome.data`` of a SUCCESS), or a ``Status`` to end with it; raises a
    ``bridgehost.errors.JobError`` subclass to pick the status (any other
    exception is CRASH). Cancelled on timeout or shutdown: release what it
    started and re-raise ``CancelledError``."""

    def run(self, job: Job) -> Awaitable[Any | Status]: ...


@runtime_checkable
class Checkable(Protocol):
    """A component that can tell, without starting, what would make requests
    fail now but needs no config change (a missing folder): one sentence per
    warning, which ``bridgehost check`` prints and ``bridgehost run`` logs."""

    def check(self) -> list[str]: ...


@runtime_checkable
class Describing(Protocol):
    """A component that can say what it will do on this machine, beyond its
    config (an analysis task: what its sandbox enforces on this kernel):
    lines ``bridgehost check`` prints under the component's label."""

    def describe(self) -> list[str]: ...


@runtime_checkable
class ReplyBounded(Protocol):
    """A trigger whose replies are bounded (a frame limit): ``reply_limit(task)``
    is the limit of a reply for ``task`` as a ``ReplyLimit`` (``max_bytes``:
    the frame limit; a result must also leave room for the reply's envelope),
    ``None`` if it does not serve ``task``. ``bridgehost check`` warns about
    a task whose result limit is over it; each request the trigger makes
    carries the exact room in ``Request.reply_limit``."""

    def reply_limit(self, task: str) -> ReplyLimit | None: ...


@runtime_checkable
class ResultBounded(Protocol):
    """A task that bounds its results: ``max_result_bytes`` is the largest
    result it returns, in bytes of JSON."""

    @property
    def max_result_bytes(self) -> int: ...


@runtime_checkable
class Reporting(Protocol):
    """A component with a state worth showing in ``Host.status()``: a dict
    of plain values; its ``"state"`` key, if any, is the component's state."""

    def status(self) -> Mapping[str, Any]: ...


Factory: TypeAlias = Callable[[Any, "Host"], object]
"""What ``registry.add(name, factory, config=...)`` takes: ``factory(config,
host)`` with the validated config Struct, returning the component."""
