"""The semantics issue 4 requires (where Automancer's own runtime fails), and
the races: pause and jump together, halt during pause, resume before
paused, halt during a cleanup that raises, retry after failure, swap during
wait."""

from __future__ import annotations

import asyncio

from bridgehost_steps import JumpRequest, PauseRequest, ProcessFailureError, SwapRequest
from bridgehost_steps.machine import NOT_PAUSABLE, Control, State
from bridgehost_steps.run_types import Topic
from stepkit import Harness, running_host, until

C, S = Control, State


def run(coro):
    return asyncio.run(coro)


def test_a_pause_between_checkpoints_is_honoured_at_the_next_checkpoint_and_never_fails_the_step():
    async def scenario():
        gate = asyncio.Event()
        seen = []

        async def process(context):
            context.pausable = True
            for index in range(3):
                await gate.wait()  # work that is neither wait() nor checkpoint()
                seen.append(index)
                await context.checkpoint()
            return seen

        h = Harness(process)
        await asyncio.sleep(0.01)
        assert h.run.control(C.PAUSE).state == "pausing"
        gate.set()
        await h.reach(S.PAUSED)
        assert seen == [0]  # stopped at the first checkpoint after the request
        assert h.run.control(C.RESUME).accepted
        assert await h.outcome() == ("ok", {"state": "completed", "result": [0, 1, 2], "location": None})

    run(scenario())


def test_a_pause_pending_when_wait_is_called_raises_at_once_without_starting_the_awaitable():
    async def scenario():
        gate, started = asyncio.Event(), []

        async def action():
            started.append(1)

        async def process(context):
            context.pausable = True
            await gate.wait()
            try:
                await context.wait(action())
            except PauseRequest:
                await context.checkpoint()
                return "paused then resumed"

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)
        gate.set()
        await h.reach(S.PAUSED)
        h.run.control(C.RESUME)
        assert await h.outcome() == ("ok", {"state": "completed", "result": "paused then resumed", "location": None})
        assert started == []

    run(scenario())


def test_a_resume_while_still_pausing_is_not_lost():
    async def scenario():
        gate = asyncio.Event()

        async def process(context):
            context.pausable = True
            await gate.wait()
            await context.checkpoint()
            return "passed the checkpoint"

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)
        answer = h.run.control(C.RESUME)
        assert answer.accepted and answer.detail == "the pending pause is withdrawn"
        gate.set()
        assert (await h.outcome())[0] == "ok"
        assert ("running", "resume", "running") not in h.transitions()
        assert ("pausing", "checkpoint", "paused") not in h.transitions()

    run(scenario())


def test_a_resume_that_arrives_before_wait_wakes_lets_the_awaitable_finish():
    async def scenario():
        async def process(context):
            context.pausable = True
            return await context.wait(asyncio.sleep(0.05, result="finished"))

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)
        h.run.control(C.RESUME)  # same loop iteration: wait() sees nothing pending
        assert (await h.outcome())[1]["result"] == "finished"

    run(scenario())


def test_a_resume_while_wait_cancels_its_awaitable_withdraws_the_pause_every_time():
    """Issue 13 item 15: pause then resume at once, thousands of times over
    many jobs, through the controller of a real host. The resume lands in
    every phase of wait() (before it wakes, while it cancels its awaitable,
    after it raised): the pause is withdrawn each time, no job fails."""

    async def soak(context):
        context.pausable = True
        while True:  # the documented pattern
            try:
                await context.wait(asyncio.Event().wait())
            except PauseRequest:
                await context.checkpoint()

    config = '[[tasks]]\nname = "soak"\nkind = "step"\ntarget = "soak"\nconcurrency = 40\n'

    async def scenario():
        async with running_host(config, steps={"soak": soak}) as (_host, controller, _seen):
            jobs = [controller.start("soak", job_id=f"soak-{i}")[0].job_id for i in range(40)]
            await until(lambda: all((s := controller.status(j)) and s.pausable for j in jobs), "every job pausable")
            refused = []
            for round_ in range(100):  # 4000 pairs
                for job in jobs:
                    pause = controller.pause(job)
                    for _ in range(round_ % 4):  # 0-3 loop iterations between the two
                        await asyncio.sleep(0)
                    resume = controller.resume(job)
                    refused += [a for a in (pause, resume) if not a.accepted]
                await asyncio.sleep(0)
            assert refused == []
            assert {controller.status(j).state for j in jobs} == {"running"}
            assert all(controller.status(j).error == "" for j in jobs)
            for job in jobs:
                assert controller.halt(job).accepted
            await until(lambda: all(controller.status(j).state == "halted" for j in jobs), "every job halted")

    run(scenario())


def test_pause_and_jump_together_pause_first_then_the_jump_on_resume():
    async def scenario():
        created = []

        async def process(context):
            context.pausable = True
            created.append(context.point)
            if context.point is not None:
                return context.point
            while True:
                try:
                    await context.wait(asyncio.Event().wait())
                except PauseRequest:
                    await context.checkpoint()  # raises the jump once resumed

        h = Harness(process)
        await asyncio.sleep(0.01)
        assert h.run.control(C.PAUSE).accepted
        jump = h.run.control(C.JUMP, point=4)
        assert jump.accepted and jump.detail == "delivered after the resume (a pause is honoured first)"
        await h.reach(S.PAUSED)
        await asyncio.sleep(0.02)
        assert created == [None] and h.run.status().pending == {"jump": 4}
        h.run.control(C.RESUME)
        assert (await h.outcome())[1]["result"] == 4
        assert created == [None, 4]
        moves = [(t[0], t[1]) for t in h.transitions()]
        assert moves.index(("paused", "resume")) < moves.index(("running", "recreated"))


def test_a_jump_while_outside_wait_is_delivered_at_the_next_checkpoint():
    async def scenario():
        gate = asyncio.Event()

        async def process(context):
            await gate.wait()
            try:
                await context.checkpoint()
            except JumpRequest as e:
                return ["caught", e.point]
            return ["no jump"]

        h = Harness(process)
        await asyncio.sleep(0.01)
        assert h.run.control(C.JUMP, point="b").detail == "delivered at the process's next checkpoint() or wait()"
        gate.set()
        assert (await h.outcome())[1]["result"] == ["caught", "b"]

    run(scenario())


def test_a_jump_pending_when_the_process_returns_re_creates_it_at_the_point():
    async def scenario():
        gate = asyncio.Event()
        points = []

        async def process(context):
            points.append(context.point)
            if context.point is None:
                await gate.wait()  # never calls checkpoint() or wait()
            return context.point

        h = Harness(process)
        await asyncio.sleep(0.01)
        assert h.run.control(C.JUMP, point=9).accepted
        assert not h.run.control(C.JUMP, point=10).accepted  # one pending change at a time, refused with a reason
        gate.set()
        assert (await h.outcome())[1]["result"] == 9
        assert points == [None, 9]

    run(scenario())


def test_a_jump_request_that_escapes_re_creates_the_process_at_the_new_point():
    async def scenario():
        created = []

        async def process(context):
            created.append(context.point)
            await context.wait(asyncio.sleep(0 if context.point else 30))
            return context.point

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.JUMP, point=2)
        assert (await h.outcome())[1]["result"] == 2
        assert created == [None, 2]
        assert ("running", "recreated", "running") in h.transitions()

    run(scenario())


def test_swap_during_wait_raises_swap_request_with_both_data_and_escaping_re_creates():
    async def scenario():
        seen = []

        async def process(data, context):
            seen.append(data)
            try:
                await context.wait(asyncio.sleep(30 if data == {"v": 1} else 0))
            except SwapRequest as e:
                seen.append((e.old_data, e.data))
                raise
            return data

        h = Harness(process, data={"v": 1})
        await asyncio.sleep(0.01)
        assert h.run.control(C.SWAP, data={"v": 2}).accepted
        assert (await h.outcome())[1]["result"] == {"v": 2}
        assert seen == [{"v": 1}, ({"v": 1}, {"v": 2}), {"v": 2}]

    run(scenario())


def test_retry_after_failure_re_creates_with_the_same_or_new_data():
    async def scenario():
        calls = []

        async def process(data, context):
            calls.append(data)
            if data["attempt"] < 3:
                raise ProcessFailureError("pressure out of range")
            return data

        h = Harness(process, data={"attempt": 1})
        await h.reach(S.FAULTED)
        assert "pressure out of range" in h.run.status().error
        assert h.run.control(C.RETRY).accepted  # same data: fails again
        await until(lambda: len(calls) == 2 and h.state is S.FAULTED, "second failure")
        assert h.run.control(C.RETRY, data={"attempt": 3}, has_data=True).accepted
        assert (await h.outcome())[1]["result"] == {"attempt": 3}
        assert calls == [{"attempt": 1}, {"attempt": 1}, {"attempt": 3}]
        errors = [a["errors"] for a in h.of(Topic.ANALYSIS)]
        assert len(errors) == 2 and "pressure out of range" in errors[0][0]["message"]

    run(scenario())


def test_a_failure_waits_for_recovery_and_ends_task_fail_when_none_comes():
    async def scenario():
        async def process(context):
            raise ProcessFailureError("invalid credentials")

        h = Harness(process, recovery_timeout_s=0.05)
        status, error = await h.outcome()
        assert status == "TASK_FAIL" and "invalid credentials" in str(error) and "recovery_timeout_s" in str(error)
        assert h.state is S.FAILED

    run(scenario())


def test_skip_after_failure_ends_a_step_skipped_and_moves_a_sequence_on():
    async def scenario():
        async def broken(context):
            raise RuntimeError("sensor unplugged")

        async def after(context):
            return "ran"

        h = Harness(broken)
        await h.reach(S.FAULTED)
        h.run.control(C.SKIP)
        assert (await h.outcome())[0] == "SKIPPED"

        h = Harness(("a", broken), ("b", after))
        await h.reach(S.FAULTED)
        assert h.run.control(C.SKIP).detail == "step 'a' skipped; step 'b' starts"
        status, data = await h.outcome()
        assert (status, data["results"], data["skipped"]) == ("ok", {"b": "ran"}, ["a"])

    run(scenario())


def test_halt_during_pause_runs_the_cleanup_and_ends_halted():
    async def scenario():
        cleaned = []

        async def process(context):
            context.pausable = True
            try:
                while True:
                    await context.checkpoint()
                    await asyncio.sleep(0.001)
            finally:
                cleaned.append("cleanup")

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)
        await h.reach(S.PAUSED)
        assert h.run.control(C.HALT).state == "halting"
        status, _ = await h.outcome()
        assert (status, h.state, cleaned) == ("CANCELLED", S.HALTED, ["cleanup"])
        assert h.transitions()[-1] == ("halting", "ended", "halted")

    run(scenario())


def test_halt_during_a_cleanup_that_raises_reports_it_and_still_ends_with_one_halt():
    async def scenario():
        async def process(context):
            try:
                await context.wait(asyncio.Event().wait())
            except asyncio.CancelledError:
                await asyncio.sleep(0.01)
                raise OSError("valve did not close")  # noqa: B904 -- a cleanup that raises, as a careless process's would

        h = Harness(process)
        await asyncio.sleep(0.01)
        assert h.run.control(C.HALT).accepted
        second = h.run.control(C.HALT)
        assert not second.accepted and second.reason == "the job is halting; wait for it to end"
        status, error = await h.outcome()
        assert status == "CANCELLED" and "valve did not close" in str(error)
        assert "OSError" in error.data["traceback"] and error.data["state"] == "halted"
        assert h.state is S.HALTED
        assert any("valve did not close" in e["message"] for a in h.of(Topic.ANALYSIS) for e in a["errors"])

    run(scenario())


def test_a_cleanup_that_never_ends_is_abandoned_after_halt_timeout():
    async def scenario():
        async def process(context):
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.shield(asyncio.Event().wait())

        h = Harness(process, halt_timeout_s=0.05)
        await asyncio.sleep(0.01)
        h.run.control(C.HALT)
        status, error = await h.outcome()
        assert status == "CANCELLED" and "abandoned" in str(error)

    run(scenario())


def test_not_pausable_refuses_the_pause_with_that_reason():
    async def scenario():
        async def process(context):
            await context.wait(asyncio.Event().wait())

        h = Harness(process)
        await asyncio.sleep(0.01)
        answer = h.run.control(C.PAUSE)
        assert (answer.accepted, answer.reason, answer.state) == (False, NOT_PAUSABLE, "running")
        h.run.control(C.HALT)
        await h.outcome()

    run(scenario())


def test_locations_sent_in_one_loop_iteration_announce_only_the_last():
    async def scenario():
        async def process(context):
            context.send_location({"phase": 0})
            context.send_location({"phase": 1})
            context.send_location({"phase": 2})
            await asyncio.sleep(0.01)
            context.send_location({"phase": 3})
            await asyncio.sleep(0.01)

        h = Harness(process)
        await h.outcome()
        assert [d["location"] for d in h.of(Topic.LOCATION)] == [{"phase": 2}, {"phase": 3}]

    run(scenario())


def test_receive_gets_messages_in_order_and_gives_way_to_a_jump():
    async def scenario():
        async def process(context):
            got = [await context.receive(), await context.receive()]
            try:
                await context.receive()
            except JumpRequest as e:
                got.append(e.point)
            return got

        h = Harness(process)
        h.run.inbox.put_nowait("a")
        h.run.inbox.put_nowait({"b": 1})
        await asyncio.sleep(0.01)
        h.run.control(C.JUMP, point="end")
        assert (await h.outcome())[1]["result"] == ["a", {"b": 1}, "end"]

    run(scenario())


def test_a_sequence_jump_to_another_step_cancels_the_current_one_and_starts_there():
    async def scenario():
        ran, cleaned = [], []

        def make(name):
            async def process(context):
                ran.append((name, context.point))
                try:
                    await context.wait(asyncio.sleep(30 if name == "a" else 0))
                finally:
                    cleaned.append(name)
                return name

            return process

        h = Harness(("a", make("a")), ("b", make("b")), ("c", make("c")))
        await asyncio.sleep(0.01)
        bad = h.run.control(C.JUMP, point={"step": "z"})
        assert not bad.accepted and "no step 'z'" in bad.reason
        assert h.run.control(C.JUMP, point={"step": 2, "point": 5}).accepted
        _, data = await h.outcome()
        assert ran == [("a", None), ("c", 5)] and cleaned == ["a", "c"]
        assert data["results"] == {"c": "c"}

    run(scenario())


def test_the_host_cancelling_a_job_halts_its_process_and_propagates():
    async def scenario():
        cleaned = []

        async def process(context):
            try:
                await context.wait(asyncio.Event().wait())
            finally:
                cleaned.append(True)

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.task.cancel()
        done, _ = await asyncio.wait((h.task,), timeout=5)
        assert done and h.task.cancelled() and cleaned == [True]
        assert h.state is S.HALTED and "cancelled by the host" in h.run.status().error

    run(scenario())


def test_an_escaped_pause_request_is_a_clear_recoverable_failure():
    async def scenario():
        attempts = []

        async def process(context):
            context.pausable = True
            attempts.append(1)
            if len(attempts) == 1:
                await context.wait(asyncio.Event().wait())  # does not catch PauseRequest
            return "second"

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)
        await h.reach(S.FAULTED)
        assert "catch it around context.wait()" in h.run.status().error
        h.run.control(C.RETRY)
        assert (await h.outcome())[1]["result"] == "second"

    run(scenario())
