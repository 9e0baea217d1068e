"""The zygote runner: what each forked run starts from, its failures, its
restart, and what is left after the task stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import textwrap

import msgspec
import numpy as np
import psutil
import pytest

from bridgehost.errors import TaskCrashed
from bridgehost_analysis.jsonvalue import TooLarge, to_json_value
from bridgehost_analysis.runner import ZygoteFailed

GOOD = "def calculate_results(ctx):\n    return {'n': len(ctx['raw_data']['trace']['force'])}\n"


def test_each_run_starts_from_the_clean_zygote(run, script, make_task, analyse) -> None:
    script("helper_mod.py", "VALUE = 1\n")
    name = script(
        "state.py",
        """
        import random, sys
        import numpy as np
        def calculate_results(ctx):
            seen = "helper_mod" in sys.modules
            import helper_mod
            helper_mod.VALUE += 1
            return {
                "helper_seen_before": seen,
                "value": helper_mod.VALUE,
                "np": np.random.random(),
                "random": random.random(),
                "numpy_preloaded": "numpy" in sys.modules,
                "pid": __import__("os").getpid(),
            }
        """,
    )
    task = make_task()
    first, second = analyse(task, run.request(name)), analyse(task, run.request(name))
    for out in (first, second):
        assert out["helper_seen_before"] is False and out["value"] == 2
    assert first["pid"] != second["pid"]
    # Forks of one zygote would share its generator state without the reseed.
    assert first["np"] != second["np"] and first["random"] != second["random"]


def test_a_run_starts_without_the_hosts_machinery(run, script, make_task, analyse) -> None:
    """The zygote holds the runtime and its preload, not the host's plugin
    manager, entry-point reader, logging or threading: every module it holds
    is copied into the page tables of every fork, and threading's at-fork
    hook alone wrote some 150 pages in each child (``docs/performance.md``)."""
    name = script(
        "modules.py",
        """
        import sys
        HOST = ("threading", "logging", "pluggy", "importlib.metadata", "asyncio", "bridgehost.plugins", "bridgehost.hookspecs")
        def calculate_results(ctx):
            return {"held": [m for m in HOST if m in sys.modules], "numpy": "numpy" in sys.modules}
        """,
    )
    assert analyse(make_task(), run.request(name)) == {"held": [], "numpy": True}


def test_limits_are_set_in_each_run(run, script, make_task, analyse) -> None:
    name = script(
        "limits.py",
        """
        import resource
        def calculate_results(ctx):
            return {k: list(resource.getrlimit(getattr(resource, k))) for k in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_CORE")}
        """,
    )
    task = make_task(memory_limit_mb=512, cpu_limit_s=2.5, nproc_limit=200)
    for _ in range(2):  # the second run is another fork, limited the same
        assert analyse(task, run.request(name)) == {
            "RLIMIT_AS": [512 << 20, 512 << 20],
            "RLIMIT_CPU": [3, 4],  # SIGXCPU at 3 s (rounded up), SIGKILL a second later
            "RLIMIT_NPROC": [200, 200],  # not enforced for root: max_processes is the bound there
            "RLIMIT_CORE": [0, 0],
        }


def test_traces_as_memory_maps_and_per_request(run, script, make_task, analyse) -> None:
    name = script(
        "kinds.py",
        """
        def calculate_results(ctx):
            force = ctx["raw_data"]["trace"]["force"]
            out = {"type": type(force).__name__, "max": max(force)}
            try:
                force[0] = 1.0
                out["writable"] = True
            except (ValueError, TypeError):
                out["writable"] = False
            return out
        """,
    )
    task = make_task(raw_data="mmap")
    assert analyse(task, run.request(name)) == {"type": "memmap", "max": 300.8, "writable": False}
    per_request = {**run.request(name), "raw_data": "lists"}
    assert analyse(task, per_request) == {"type": "list", "max": 300.8, "writable": True}
    assert analyse(task, {**per_request, "raw_data": "arrays"})["type"] == "ndarray"


SPIN_ON_USR1 = """
import signal

def _spin(signum, frame):
    while True:  # running, never answering: a hung zygote, not a stopped one
        pass

signal.signal(signal.SIGUSR1, _spin)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP, signal.SIGUSR1], ids=["killed", "stopped", "hung"])
def test_a_lost_zygote_fails_the_run_and_is_replaced(run, script, make_task, sig, tmp_path, monkeypatch) -> None:
    """A zygote killed, stopped from outside (the host sees its state in
    /proc within WATCH_S and kills it with its processes), or hung while
    running (a preload module's signal handler that spins: the zygote stops
    answering the host's pings, and is killed after ANSWER_S): the run in
    progress ends CRASH saying so, not TIMEOUT, and the next one runs on a
    new zygote; the lost one and its running child are gone."""
    slow = script("slow.py", "import time\ndef calculate_results(ctx):\n    time.sleep(300)\n")
    good = script("good.py", GOOD)
    if sig == signal.SIGUSR1:
        (tmp_path / "bh_spin_on_usr1.py").write_text(SPIN_ON_USR1)
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the zygote's environment is the host's
        task = make_task(preload=["numpy", "bh_spin_on_usr1"])
    else:
        task = make_task()

    async def lose_zygote_during_a_run():
        await task.start()
        zygote = task.runner.zygote
        running = asyncio.ensure_future(task.run(_job(run.request(slow))))
        while not zygote.running:
            await asyncio.sleep(0.01)
        child = next(iter(zygote.running))
        os.kill(zygote.pid, sig)
        with pytest.raises(TaskCrashed, match="was lost with the analysis zygote"):
            await asyncio.wait_for(running, 20)
        result = msgspec.json.decode(await task.run(_job(run.request(good))))
        assert task.runner.zygote is not zygote and task.runner.zygote.alive
        for pid in (zygote.pid, child):
            with contextlib.suppress(psutil.NoSuchProcess):  # gone, or a zombie not yet reaped
                assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"{pid} still runs"
        return result

    assert asyncio.run(_and_stop(task, lose_zygote_during_a_run())) == {"n": 4}


def test_a_preload_that_fails_to_import_stops_the_start(make_task, analyse) -> None:
    task = make_task(preload=["numpy", "no_such_module_xyz"])
    with pytest.raises(ZygoteFailed, match="importing 'no_such_module_xyz' failed: ModuleNotFoundError"):
        asyncio.run(task.start())


def test_a_preload_that_starts_a_thread_is_refused(make_task, tmp_path, monkeypatch) -> None:
    (tmp_path / "threaded_mod.py").write_text(
        textwrap.dedent(
            """
            import threading, time
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    task = make_task(preload=["threaded_mod"])
    with pytest.raises(ZygoteFailed, match="2 threads after importing threaded_mod.*unsafe"):
        asyncio.run(task.start())


def test_stop_leaves_no_process(run, script, make_task) -> None:
    task = make_task(prefork=3)

    async def use_and_stop():
        await task.start()
        await task.run(_job(run.request(script("good.py", GOOD))))
        zygote = psutil.Process(task.runner.zygote.pid)
        while sorted(c.name() for c in zygote.children()) != ["bh-waiting"] * 3:
            await asyncio.sleep(0.02)  # the used child exits, its replacement is forked
        procs = [zygote, *zygote.children()]
        await task.stop()
        return procs

    procs = asyncio.run(asyncio.wait_for(use_and_stop(), 20))
    assert len(procs) == 4  # the zygote and its waiting children
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert alive == []
    assert psutil.Process().children(recursive=True) == []


def test_the_zygote_keeps_prefork_children_waiting(run, script, make_task) -> None:
    task = make_task(prefork=3, concurrency=2)
    good = script("good.py", GOOD)

    async def runs():
        await task.start()
        for _ in range(4):
            await asyncio.gather(*(task.run(_job(run.request(good))) for _ in range(3)))
        zygote = psutil.Process(task.runner.zygote.pid)
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the last children exit after their reply, their replacements come
            names, ready = sorted(c.name() for c in zygote.children()), len(task.runner.zygote.ready)
            # a child names itself before the host has read the zygote's Ready for it: wait for both
            if (names, ready) == (["bh-waiting"] * 3, 3) or asyncio.get_running_loop().time() > deadline:
                return names, ready
            await asyncio.sleep(0.02)

    assert asyncio.run(_and_stop(task, runs())) == (["bh-waiting"] * 3, 3)


def test_a_waiting_child_killed_from_outside_is_replaced(run, script, make_task) -> None:
    task = make_task(prefork=2)
    good = script("good.py", GOOD)

    async def kill_one():
        await task.start()
        zygote = psutil.Process(task.runner.zygote.pid)
        victim = zygote.children()[0]
        victim.kill()
        deadline = asyncio.get_running_loop().time() + 10
        while victim.pid in [c.pid for c in zygote.children()] or len(zygote.children()) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the killed child was not replaced"
            await asyncio.sleep(0.02)
        results = [msgspec.json.decode(await task.run(_job(run.request(good)))) for _ in range(3)]
        return results, victim.pid not in [c.pid for c in task.runner.zygote.ready]

    assert asyncio.run(_and_stop(task, kill_one())) == ([{"n": 4}] * 3, True)


def test_the_hosts_ends_of_the_channels_are_not_inherited(make_task) -> None:
    task = make_task(prefork=2)

    async def flags():
        await task.start()
        ready = task.runner.zygote.ready
        while len(ready) < 2:
            await asyncio.sleep(0.01)
        return [os.get_inheritable(fd) for c in ready for fd in (c.reply.fileno(), c.output_fd)]

    assert asyncio.run(_and_stop(task, flags())) == [False] * 4


def test_json_size_is_bounded_before_encoding() -> None:
    assert to_json_value({"x": "a" * 100}, max_bytes=200) == {"x": "a" * 100}
    with pytest.raises(TooLarge, match=r"longer than 100 bytes by result\['x'\]"):
        to_json_value({"x": "a" * 100}, max_bytes=100)
    with pytest.raises(TooLarge, match=r"result\['v'\]\[\d+\]"):
        to_json_value({"v": [10**18] * 10}, max_bytes=150)  # 19 digits each
    assert to_json_value({"v": np.arange(3.0).tolist()}, max_bytes=100) == {"v": [0.0, 1.0, 2.0]}


def _job(params):
    from bridgehost.jobs import Job, Request

    return Job(Request(task="python.run_analysis", params=params))


async def _and_stop(task, coro):
    try:
        return await coro
    finally:
        await task.stop()
