"""The steps of examples/steps/prep.toml, written as Automancer's processes
(https://github.com/slietar/automancer, "Developing processes")."""

import asyncio
import time

import msgspec

from bridgehost_steps import JumpRequest, PauseRequest, run_actions, step


class Heat(msgspec.Struct):
    target_c: float
    phase_s: float  # seconds per phase


class Phase(msgspec.Struct):
    index: int


@step(data=Heat, point=Phase)
async def heat(data, context):
    """Five phases ramping to data.target_c; pausable; jump between phases
    with the point {"index": n} (the five-step example of Automancer's
    docs, "Developing processes", https://github.com/slietar/automancer)."""
    context.pausable = True
    index = context.point.index if context.point else 0
    while index < 5:
        setpoint = data.target_c * (index + 1) / 5
        context.send_location({"phase": index, "setpoint_c": setpoint})
        context.send_duration((5 - index) * data.phase_s)
        try:
            await context.wait(asyncio.sleep(data.phase_s))
            index += 1
        except PauseRequest:
            await context.checkpoint()  # the phase starts again after the resume
        except JumpRequest as e:
            index = e.point.index
    return {"reached_c": data.target_c}


class Rinse(msgspec.Struct):
    cycles: int


@step(data=Rinse)
async def rinse(data, context):
    """Synchronous valve actions in a worker thread, a checkpoint between two."""
    context.pausable = True

    def cycle(n):
        def action():
            time.sleep(0.2)  # open, flush, close
            return n

        return action

    done = await run_actions(context, *(cycle(n) for n in range(data.cycles)))
    context.send_location({"cycles_done": len(done)})
    return {"cycles": len(done)}
