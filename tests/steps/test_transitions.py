"""Every row of the state machine's table, made to happen by a real process.

``DRIVERS`` holds, for each ``(state, event)`` of ``TRANSITIONS``, a scenario
that brings a run to ``state`` and triggers ``event``; the test checks the
run announces exactly that transition. A row without a driver fails
``test_every_transition_has_a_driver``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bridgehost_steps import JumpRequest, PauseRequest
from bridgehost_steps.machine import FINAL, REFUSALS, TRANSITIONS, Control, ProcessEvent, State, refusal
from stepkit import Harness, until

S, C, P = State, Control, ProcessEvent


def test_every_control_in_every_state_is_accepted_or_refused_with_a_reason():
    for state in State:
        for control in Control:
            accepted = (state, control) in TRANSITIONS
            assert accepted != ((state, control) in REFUSALS), (state, control)
            if not accepted:
                assert refusal(state, control)
    assert all(not any((s, e) in TRANSITIONS for e in [*Control, *ProcessEvent]) for s in FINAL)


# -- processes the drivers use ------------------------------------------------


def waiter(gate: asyncio.Event, pausable: bool = True):
    """Pausable; waits for ``gate`` inside context.wait(), pausing as Automancer's docs show
    ("Developing processes", https://github.com/slietar/automancer)."""

    async def process(context):
        context.pausable = pausable
        while True:
            try:
                await context.wait(gate.wait())
            except PauseRequest:
                await context.checkpoint()
            else:
                return "done"

    return process


def outside(gate: asyncio.Event, then: str = "checkpoint"):
    """Pausable; waits for ``gate`` outside wait()/checkpoint(), then calls
    checkpoint(), returns or raises, as ``then`` says."""

    async def process(context):
        context.pausable = True
        await gate.wait()
        if then == "checkpoint":
            await context.checkpoint()
        elif then == "raise":
            raise RuntimeError("boom")
        return "done"

    return process


def paused_aside(gate: asyncio.Event, then: str):
    """Pauses in a checkpoint() of a child task while its main flow waits
    for ``gate``, then returns or raises."""

    async def process(context):
        context.pausable = True

        async def checkpoints():
            while True:
                await context.checkpoint()

        aside = asyncio.ensure_future(checkpoints())
        await gate.wait()
        aside.cancel()
        if then == "raise":
            raise RuntimeError("boom")
        return "done"

    return process


def failing_once():
    calls = []

    async def process(context):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return "second attempt"

    return process


async def quick(context):
    return "quick"


def slow_cleanup(release: asyncio.Event):
    async def process(context):
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()

    return process


# -- one driver per row ---------------------------------------------------------

Driver = Callable[[], Awaitable[Harness]]
DRIVERS: dict[tuple[State, object], Driver] = {}


def drives(state: State, event: object):
    def register(fn: Driver) -> Driver:
        DRIVERS[(state, event)] = fn
        return fn

    return register


async def running_waiter(**kwargs) -> tuple[Harness, asyncio.Event]:
    gate = asyncio.Event()
    h = Harness(waiter(gate), **kwargs)
    await h.reach(S.RUNNING)
    await asyncio.sleep(0.01)  # inside wait()
    return h, gate


async def pausing_outside(then: str = "checkpoint", *more) -> tuple[Harness, asyncio.Event]:
    gate = asyncio.Event()
    h = Harness(outside(gate, then), *more)
    await asyncio.sleep(0.01)
    assert h.run.control(C.PAUSE).accepted
    assert h.state is S.PAUSING
    return h, gate


async def paused_waiter() -> tuple[Harness, asyncio.Event]:
    h, gate = await running_waiter()
    assert h.run.control(C.PAUSE).accepted
    await h.reach(S.PAUSED)
    return h, gate


async def faulted(*more, **kwargs) -> Harness:
    h = Harness(failing_once(), *more, **kwargs)
    await h.reach(S.FAULTED)
    return h


def drives_control(state: State, control: Control, setup: Callable[[], Awaitable[object]], **kwargs: object) -> None:
    """Register the driver of a row that is one control request: reach
    ``state`` with ``setup``, then send ``control`` (with its point or data)."""

    async def driver() -> Harness:
        reached = await setup()
        h = reached[0] if isinstance(reached, tuple) else reached
        h.run.control(control, **kwargs)
        return h

    drives(state, control)(driver)


for _state, _control, _setup, _kwargs in (
    (S.RUNNING, C.PAUSE, running_waiter, {}),
    (S.RUNNING, C.HALT, running_waiter, {}),
    (S.RUNNING, C.JUMP, running_waiter, {"point": 3}),
    (S.RUNNING, C.SWAP, running_waiter, {"data": {"new": True}}),
    (S.PAUSING, C.RESUME, pausing_outside, {}),
    (S.PAUSING, C.HALT, pausing_outside, {}),
    (S.PAUSING, C.JUMP, pausing_outside, {"point": 1}),
    (S.PAUSING, C.SWAP, pausing_outside, {"data": 1}),
    (S.PAUSED, C.RESUME, paused_waiter, {}),
    (S.PAUSED, C.HALT, paused_waiter, {}),
    (S.PAUSED, C.JUMP, paused_waiter, {"point": 2}),
    (S.PAUSED, C.SWAP, paused_waiter, {"data": 2}),
    (S.FAULTED, C.RETRY, faulted, {}),
    (S.FAULTED, C.SKIP, faulted, {}),
    (S.FAULTED, C.HALT, faulted, {}),
):
    drives_control(_state, _control, _setup, **_kwargs)


@drives(S.RUNNING, P.RETURNED)
async def _():
    return Harness(quick)


@drives(S.RUNNING, P.NEXT_STEP)
async def _():
    return Harness(("a", quick), ("b", quick))


@drives(S.RUNNING, P.RECREATED)
async def _():
    async def jumps_itself(context):
        if context.point is None:
            raise JumpRequest(7)
        return context.point

    return Harness(jumps_itself)


@drives(S.RUNNING, P.RAISED)
async def _():
    return Harness(failing_once())


@drives(S.RUNNING, P.CANCELLED)
async def _():
    h, _gate = await running_waiter()
    h.task.cancel()
    return h


@drives(S.PAUSING, P.CHECKPOINT)
async def _():
    h, gate = await pausing_outside()
    gate.set()
    return h


@drives(S.PAUSING, P.RETURNED)
async def _():
    h, gate = await pausing_outside(then="return")
    gate.set()
    return h


@drives(S.PAUSING, P.NEXT_STEP)
async def _():
    h, gate = await pausing_outside("return", ("b", quick))
    gate.set()
    return h


@drives(S.PAUSING, P.RECREATED)
async def _():
    gate = asyncio.Event()
    h = Harness(outside(gate, then="return"))
    await asyncio.sleep(0.01)
    assert h.run.control(C.JUMP, point=5).accepted  # pending: the process is outside wait()
    assert h.run.control(C.PAUSE).accepted
    gate.set()  # it returns without a checkpoint: the pending jump re-creates it
    return h


@drives(S.PAUSING, P.RAISED)
async def _():
    h, gate = await pausing_outside(then="raise")
    gate.set()
    return h


@drives(S.PAUSING, P.CANCELLED)
async def _():
    h, _gate = await pausing_outside()
    h.task.cancel()
    return h


@drives(S.PAUSED, P.NEXT_STEP)
async def _():
    gate = asyncio.Event()
    h = Harness(("a", paused_aside(gate, "return")), ("b", quick))
    await asyncio.sleep(0.01)
    h.run.control(C.PAUSE)
    await h.reach(S.PAUSED)
    gate.set()
    return h


@drives(S.PAUSED, P.RECREATED)
async def _():
    gate = asyncio.Event()
    h = Harness(("a", waiter(gate)), ("b", quick))
    await asyncio.sleep(0.01)
    h.run.control(C.PAUSE)
    await h.reach(S.PAUSED)
    assert h.run.control(C.JUMP, point={"step": "b"}).accepted
    return h


@drives(S.PAUSED, P.RETURNED)
async def _():
    gate = asyncio.Event()
    h = Harness(paused_aside(gate, "return"))
    await asyncio.sleep(0.01)
    h.run.control(C.PAUSE)
    await h.reach(S.PAUSED)
    gate.set()
    return h


@drives(S.PAUSED, P.RAISED)
async def _():
    gate = asyncio.Event()
    h = Harness(paused_aside(gate, "raise"))
    await asyncio.sleep(0.01)
    h.run.control(C.PAUSE)
    await h.reach(S.PAUSED)
    gate.set()
    return h


@drives(S.PAUSED, P.CANCELLED)
async def _():
    h, _gate = await paused_waiter()
    h.task.cancel()
    return h


@drives(S.FAULTED, P.NEXT_STEP)
async def _():
    h = await faulted(("b", quick))
    h.run.control(C.SKIP)
    return h


@drives(S.FAULTED, P.RETURNED)
async def _():
    h = Harness(("a", quick), ("b", failing_once()))
    await h.reach(S.FAULTED)
    h.run.control(C.SKIP)  # a failed last step, skipped: the sequence completes
    return h


@drives(S.FAULTED, P.RECOVERY_EXPIRED)
async def _():
    return await faulted(recovery_timeout_s=0.05)


@drives(S.FAULTED, P.CANCELLED)
async def _():
    h = await faulted()
    h.task.cancel()
    return h


@drives(S.HALTING, P.CANCELLED)
async def _():
    release = asyncio.Event()
    h = Harness(slow_cleanup(release))
    await asyncio.sleep(0.01)
    h.run.control(C.HALT)
    await asyncio.sleep(0.01)
    h.task.cancel()
    await asyncio.sleep(0.01)
    release.set()
    return h


@drives(S.HALTING, P.ENDED)
async def _():
    h, _gate = await running_waiter()
    h.run.control(C.HALT)
    return h


def test_every_transition_has_a_driver():
    assert set(DRIVERS) == set(TRANSITIONS)


@pytest.mark.parametrize("row", list(TRANSITIONS), ids=lambda r: f"{r[0].value}-{r[1].value}")
def test_transition(row):
    state, event = row
    expected = (state.value, event.value, TRANSITIONS[row].value)

    async def scenario():
        h = await DRIVERS[row]()
        await until(lambda: expected in h.transitions(), f"{expected} in {h.transitions()}")
        if not h.task.done():
            h.task.cancel()
        await asyncio.wait((h.task,), timeout=5)
        if h.task.done() and not h.task.cancelled():
            h.task.exception()  # retrieved: the ending is not what this test is about

    asyncio.run(scenario())
