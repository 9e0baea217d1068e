"""Steps the EPICS step-control tests configure (importable as
``epics_steps`` with this folder on PYTHONPATH), written as the seed's
processes (shared/seeds/automancer-processes.txt)."""

import asyncio

import msgspec

from bridgehost_steps import step


class Phases(msgspec.Struct):
    phases: int
    phase_s: float


@step(data=Phases)
async def steady(data, context):
    """Not pausable (context.pausable stays False): a pause is refused."""
    for index in range(data.phases):
        context.send_location({"phase": index, "of": data.phases})
        await context.wait(asyncio.sleep(data.phase_s))
    return {"phases": data.phases}
