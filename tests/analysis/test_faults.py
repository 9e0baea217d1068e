"""Scripts that misbehave, in real child processes: each ends in its status
within its time, leaves nothing running, and the next request succeeds."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from bridgehost.errors import TaskCrashed
from bridgehost.jobs import Status

GOOD = "def calculate_results(ctx):\n    return {'n': len(ctx['raw_data']['trace']['force'])}\n"

# Starts a grandchild, writes both pids to custom_params["pidfile"], then `then`.
SPAWN = """
import os, subprocess, sys
def calculate_results(ctx):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    path = ctx["custom_params"]["pidfile"]
    with open(path + ".tmp", "w") as f:
        f.write(f"{{os.getpid()}} {{sleeper.pid}}")
    os.replace(path + ".tmp", path)
    {then}
"""


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its parent to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pids(pidfile: Path) -> list[int]:
    assert pidfile.exists(), "the script did not get to write its pids"
    return [int(p) for p in pidfile.read_text().split()]


def wait_gone(pids: list[int], within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while not all(gone(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_timeout_kills_the_process_group(run, script, make_task, analyse, tmp_path) -> None:
    name = script("hang.py", SPAWN.format(then="while True: pass"))
    pidfile = tmp_path / "pids"
    task = make_task()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        analyse(task, run.request(name, custom_params={"pidfile": str(pidfile)}), timeout=3.0)
    elapsed = time.monotonic() - start
    # Guards against a hang, not a speed: the margin itself is measured, not asserted.
    assert elapsed < 3.0 + 5.0, f"cancellation took {elapsed - 3.0:.2f} s beyond the timeout"
    assert wait_gone(read_pids(pidfile), within=1.0), "a process of the cancelled run survived"
    assert analyse(task, run.request(script("good.py", GOOD))) == {"n": 4}


def test_processes_left_behind_by_a_successful_script_are_killed(run, script, make_task, analyse, tmp_path) -> None:
    name = script("leaver.py", SPAWN.format(then="return {'ok': True}"))
    pidfile = tmp_path / "pids"
    assert analyse(make_task(), run.request(name, custom_params={"pidfile": str(pidfile)})) == {"ok": True}
    assert wait_gone(read_pids(pidfile), within=0.5)


FAULTS = {
    "raises": (
        "def calculate_results(ctx):\n    print('about to fail')\n    raise ValueError('bad trace')\n",
        {},
        r"fault\.py:calculate_results raised ValueError: bad trace",
    ),
    "syntax_error": ("def calculate_results(ctx)\n    return {}\n", {}, "raised SyntaxError"),
    "sys_exit": (
        "import sys\ndef calculate_results(ctx):\n    sys.exit(3)\n",
        {},
        r"exited with code 3 \(sys\.exit\) before returning a result",
    ),
    "os_exit": (
        "import os\ndef calculate_results(ctx):\n    os._exit(0)\n",
        {},
        "exited with code 0 before returning a result",
    ),
    "segfault": (
        "import ctypes\ndef calculate_results(ctx):\n    return {'x': ctypes.string_at(0)}\n",
        {},
        "killed by signal SIGSEGV before returning a result",
    ),
    "memory": (
        "def calculate_results(ctx):\n    hog = bytearray(1 << 30)\n    return {'n': len(hog)}\n",
        {"memory_limit_mb": 256},
        r"raised MemoryError.*memory_limit_mb \(256\)",
    ),
    "numpy_memory": (
        "import numpy as np\ndef calculate_results(ctx):\n    return {'s': float(np.ones(1 << 28).sum())}\n",
        {"memory_limit_mb": 256},
        r"raised .*MemoryError.*memory_limit_mb \(256\)",
    ),
    "cpu": (
        "def calculate_results(ctx):\n    while True:\n        pass\n",
        {"cpu_limit_s": 1},
        r"killed by signal SIGXCPU.*cpu_limit_s = 1",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_a_crash_and_the_next_request_succeeds(run, script, make_task, analyse, fault: str) -> None:
    source, config, match = FAULTS[fault]
    task = make_task(**config)
    start = time.monotonic()
    with pytest.raises(TaskCrashed, match=match) as info:
        analyse(task, run.request(script("fault.py", source)), timeout=15)
    assert time.monotonic() - start < 10
    assert info.value.status is Status.CRASH
    assert analyse(task, run.request(script("good.py", GOOD))) == {"n": 4}


def test_crash_data_has_the_traceback_and_output(run, script, make_task, analyse) -> None:
    name = script(
        "tb.py",
        """
        def helper(trace):
            return trace["missing"]

        def calculate_results(ctx):
            print("about to fail")
            return helper(ctx["raw_data"]["trace"])
        """,
    )
    with pytest.raises(TaskCrashed, match="raised KeyError: 'missing'") as info:
        analyse(make_task(), run.request(name))
    tb = info.value.data["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert 'tb.py", line 7, in calculate_results' in tb and "in helper" in tb
    assert "child.py" not in tb  # runner frames left out
    assert info.value.data["output"] == "about to fail\n"


def test_segfault_output_shows_the_python_stack(run, script, make_task, analyse) -> None:
    name = script("segv.py", FAULTS["segfault"][0])
    with pytest.raises(TaskCrashed) as info:
        analyse(make_task(), run.request(name))
    output = info.value.data["output"]
    assert "Segmentation fault" in output and "segv.py" in output


def test_sys_exit_traceback_shows_where(run, script, make_task, analyse) -> None:
    with pytest.raises(TaskCrashed) as info:
        analyse(make_task(), run.request(script("exit.py", FAULTS["sys_exit"][0])))
    assert "sys.exit(3)" in info.value.data["traceback"]


def test_output_tail_is_bounded(run, script, make_task, analyse) -> None:
    name = script(
        "chatty.py",
        """
        def calculate_results(ctx):
            for i in range(20000):
                print(f"line {i}")
            raise RuntimeError("done talking")
        """,
    )
    with pytest.raises(TaskCrashed) as info:
        analyse(make_task(max_output_bytes=1000), run.request(name))
    output = info.value.data["output"]
    assert output.startswith("[... ") and "earlier bytes not kept]" in output
    assert output.endswith("line 19999\n")
    assert len(output.encode()) < 1100
