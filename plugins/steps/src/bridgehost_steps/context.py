"""``ProcessContext``: what a process receives to talk to its owner (Automancer's
process API, https://github.com/slietar/automancer, "Creating a simple process").

A context belongs to one creation of a process: a jump or swap that
re-creates the process hands the new one a new context. Every method runs on
the host's event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from bridgehost_steps.machine import State
from bridgehost_steps.values import Analysis, export

if TYPE_CHECKING:
    from bridgehost_steps.run import Run
    from bridgehost_steps.steps import StepDef

T = TypeVar("T")


class ProcessContext:
    """The process's side of a steps job.

    ``data``: the starting data (converted to the step's data type).
    ``point``: the starting point (None: the beginning).
    ``pausable``: settable; False by default, and while it is False a pause
    request is refused with "not pausable". A change is announced.
    """

    def __init__(self, run: Run, step: StepDef, data: Any, point: Any):
        self._run = run
        self.step = step
        self.data = data
        self.point = point

    # -- reports -------------------------------------------------------------

    @property
    def pausable(self) -> bool:
        return self._run.pausable

    @pausable.setter
    def pausable(self, value: bool) -> None:
        self._run.set_pausable(bool(value))

    def send_location(self, location: Any) -> None:
        """Report where the process is: an object with ``export()``, a msgspec
        Struct, a dataclass or plain JSON. Exported at once (``TypeError`` if
        it cannot be); several calls in one event-loop iteration announce
        only the last (as Automancer's ``send_location``)."""
        self._run.post_location(export(location))

    def send_duration(self, seconds: float | None) -> None:
        """Report the estimated remaining time in seconds (None: unknown).
        Raises ``ValueError`` for a negative or non-finite number."""
        if seconds is not None:
            seconds = float(seconds)
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"send_duration takes a finite number of seconds >= 0, got {seconds!r}")
        self._run.post_duration(seconds)

    def send_analysis(
        self, analysis: Any = None, *, errors: list[Any] = (), warnings: list[Any] = (), effects: list[Any] = ()  # type: ignore[assignment]
    ) -> None:
        """Report errors, warnings and effects: an ``Analysis`` (or any object
        exporting to ``{"errors": [...], "warnings": [...], "effects": [...]}``),
        or the lists as keywords. Announced as a ``diagnostic`` event."""
        if analysis is None:
            analysis = Analysis(errors=list(errors), warnings=list(warnings), effects=list(effects))
        exported = export(analysis)
        if not isinstance(exported, dict) or not set(exported) <= {"errors", "warnings", "effects"}:
            raise TypeError(f"an analysis exports to {{'errors', 'warnings', 'effects'}} lists, got {exported!r:.80}")
        self._run.post_analysis({k: list(exported.get(k, [])) for k in ("errors", "warnings", "effects")})

    def send_error(self, diagnostic: Any) -> None:
        """``send_analysis(errors=[diagnostic])``."""
        self.send_analysis(errors=[diagnostic])

    def send_warning(self, diagnostic: Any) -> None:
        """``send_analysis(warnings=[diagnostic])``."""
        self.send_analysis(warnings=[diagnostic])

    def send_effect(self, effect: Any) -> None:
        """``send_analysis(effects=[effect])``."""
        self.send_analysis(effects=[effect])

    # -- control points ----------------------------------------------------

    async def checkpoint(self) -> None:
        """Honour what is pending, then return.

        Yields to the event loop once (so control requests get in even in a
        tight loop). With a pause pending the job becomes PAUSED and this
        waits until resumed; a halt then raises ``CancelledError`` here.
        Then a pending jump or swap is raised as ``JumpRequest`` /
        ``SwapRequest``.
        """
        run = self._run
        await asyncio.sleep(0)
        while True:
            if run.state is State.PAUSING:
                run.reached_checkpoint()
            if run.state is State.PAUSED:
                await run.wakeup.wait()
                continue
            change = run.take_change()
            if change is not None:
                raise change
            return

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` and return its result, unless a control request
        comes first: then cancel it (a pause, jump or swap) and raise
        ``PauseRequest``, ``JumpRequest`` or ``SwapRequest``.

        A request already pending when called is raised at once (the
        awaitable is closed unstarted). If the awaitable finishes while being
        cancelled, its result is returned and the request stays pending; if
        a resume withdraws the pause while the awaitable is being cancelled,
        ``PauseRequest`` is still raised (the next ``checkpoint()`` passes). A
        halt cancels the awaitable and raises ``CancelledError``. Wrap the
        awaitable in ``asyncio.shield`` to keep it running (Automancer, "Jumping").
        """
        run = self._run
        if run.interrupt_pending():
            _discard(awaitable)
            raise run.take_interrupt()
        future = asyncio.ensure_future(awaitable)
        try:
            while True:
                signal = run.new_interrupt()
                try:
                    await asyncio.wait((future, signal), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    run.drop_interrupt(signal)
                if future.done():
                    return future.result()
                if not run.interrupt_pending():
                    continue  # e.g. a pause withdrawn by a resume before we woke
                future.cancel()
                await asyncio.wait((future,))
                if not future.cancelled() and future.exception() is None:
                    return future.result()  # it finished anyway: keep the request pending
                raise run.take_interrupt()
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
                await asyncio.wait((future,))
            raise

    async def receive(self) -> Any:
        """The next message sent to this job (``steps.send``), as JSON; waits
        like ``wait()`` and raises the same requests. Messages queue, none is
        lost: past the task's ``inbox_size`` unreceived ones a send is refused."""
        return await self.wait(self._run.inbox.get())


def _discard(awaitable: Awaitable[Any]) -> None:
    """Release an awaitable that will not be awaited (no 'never awaited' warning)."""
    close = getattr(awaitable, "close", None)
    if asyncio.iscoroutine(awaitable) and close is not None:
        close()
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()
