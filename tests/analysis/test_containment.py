"""Hostile scripts at the task level, with both runners: each ends in a clear
error (or its result), the next request succeeds, and no process of the run
is left, also those that left its session or were orphaned on purpose.

Every script appends the pids it wants checked to ``pids`` in its run
folder (its working directory), starting with its own at import: the run's
session id is that pid, so any process still in the session is found too.
The run folder is read-only to a script; these tasks make it writable
(``sandbox_write``) for that.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from bridgehost.errors import TaskCrashed

GOOD = "def calculate_results(ctx):\n    return {'n': len(ctx['raw_data']['trace']['force'])}\n"
MARK = "import os\nwith open('pids', 'a') as _f:\n    _f.write(f'{os.getpid()}\\n')\n"

# name: (script after MARK, config, expected exception, message pattern, timeout)
HOSTILE = {
    "infinite_loop": ("def calculate_results(ctx):\n    while True:\n        pass\n", {}, TimeoutError, None, 2.0),
    "sleep_forever": ("import time\ndef calculate_results(ctx):\n    time.sleep(10**6)\n", {}, TimeoutError, None, 2.0),
    "slow_import": ("import time\ntime.sleep(5)\ndef calculate_results(ctx):\n    return {}\n", {}, TimeoutError, None, 2.0),
    "sys_exit": (
        "import sys\ndef calculate_results(ctx):\n    sys.exit(3)\n",
        {},
        TaskCrashed,
        r"exited with code 3 \(sys\.exit\)",
        20.0,
    ),
    "os_exit": (
        "def calculate_results(ctx):\n    os._exit(0)\n",
        {},
        TaskCrashed,
        "exited with code 0 before returning a result",
        20.0,
    ),
    "segfault": (
        "import ctypes\ndef calculate_results(ctx):\n    return {'x': ctypes.string_at(0)}\n",
        {},
        TaskCrashed,
        "killed by signal SIGSEGV",
        20.0,
    ),
    "ten_times_the_memory": (
        "def calculate_results(ctx):\n    return {'n': len(bytearray(2560 << 20))}\n",
        {"memory_limit_mb": 256},
        TaskCrashed,
        r"raised MemoryError.*memory_limit_mb \(256\)",
        20.0,
    ),
    "fork_bomb": (
        (
            "def calculate_results(ctx):\n    while True:\n        try:\n            os.fork()\n"
            "        except OSError:\n            pass\n"
        ),
        {"max_processes": 32},
        TaskCrashed,
        r"more than max_processes \(32\) processes.*fork bomb",
        20.0,
    ),
    "gigabyte_of_stdout": (
        (
            "import sys\ndef calculate_results(ctx):\n    line = 'x' * (1 << 20)\n    for _ in range(1024):\n"
            "        sys.stdout.write(line)\n    return {}\n"
        ),
        {},
        TaskCrashed,
        r"wrote more than output_kill_bytes \(67108864\) to stdout/stderr and was killed",
        20.0,
    ),
    "gigabyte_result": (
        "def calculate_results(ctx):\n    return {'x': 'a' * (1 << 30)}\n",
        {},
        TaskCrashed,
        "max_result_bytes|too large to encode",
        20.0,
    ),
    "ten_megabyte_exception": (
        "def calculate_results(ctx):\n    raise ValueError('m' * 10_000_000)\n",
        {},
        TaskCrashed,
        r"raised ValueError: m+\n\[\.\.\. \d+ characters cut \.\.\.\]\nm+",
        20.0,
    ),
    "nan": ("def calculate_results(ctx):\n    return {'v': float('nan')}\n", {}, TaskCrashed, r"result\['v'\] is nan", 20.0),
    "numpy_array": (
        "import numpy as np\ndef calculate_results(ctx):\n    return {'v': np.zeros(3)}\n",
        {},
        TaskCrashed,
        r"result\['v'\] is a ndarray",
        20.0,
    ),
    "set": ("def calculate_results(ctx):\n    return {'v': {1, 2}}\n", {}, TaskCrashed, r"result\['v'\] is a set", 20.0),
    "custom_class": (
        "class Force:\n    pass\ndef calculate_results(ctx):\n    return {'v': Force()}\n",
        {},
        TaskCrashed,
        r"result\['v'\] is a Force",
        20.0,
    ),
}

# Scripts that start processes meant to outlive them, then return normally.
SLEEPER = "[sys.executable, '-c', 'import time; time.sleep(300)']"
LEAVERS = {
    "grandchild": f"import subprocess, sys\ndef calculate_results(ctx):\n"
    f"    p = subprocess.Popen({SLEEPER})\n    open('pids', 'a').write(f'{{p.pid}}\\n')\n    return {{'ok': True}}\n",
    "setsid_grandchild": f"import subprocess, sys\ndef calculate_results(ctx):\n"
    f"    p = subprocess.Popen({SLEEPER}, start_new_session=True)\n"
    "    open('pids', 'a').write(f'{p.pid}\\n')\n    return {'ok': True}\n",
    "double_fork_daemon": """import time
def calculate_results(ctx):
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            with open('pids', 'a') as f:
                f.write(f'{os.getpid()}\\n')
            time.sleep(300)
        os._exit(0)
    os.waitpid(middle, 0)
    deadline = time.monotonic() + 10
    while open('pids').read().count('\\n') < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the daemon has written its pid
    return {'ok': True}
""",
}


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def in_session(sid: int) -> list[int]:
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and not gone(p.pid):
                found.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


def strays() -> list[str]:
    """Processes under this test other than zygotes and waiting children."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() not in ("bh-zygote", "bh-waiting") and p.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid} {p.name()}")
        except psutil.NoSuchProcess:
            pass
    return found


def assert_nothing_left(run_folder: Path, within: float = 5.0) -> None:
    pidfile = run_folder / "pids"
    assert pidfile.exists(), "the script did not get to write its pid"
    pids = [int(p) for p in pidfile.read_text().split()]
    deadline = time.monotonic() + within
    while True:
        left = [p for p in pids if not gone(p)] + in_session(pids[0]) + strays()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == [], f"processes of the run are left: {left}"
    pidfile.unlink()


@pytest.fixture(params=["zygote", "subprocess"])
def runner(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_script_is_contained(run, script, make_task, analyse, runner: str, case: str) -> None:
    source, config, expected, match, timeout = HOSTILE[case]
    if runner == "subprocess" and expected is TimeoutError:
        timeout = 4.0  # a new interpreter, its imports and its sandbox take over 2 s on a loaded machine (< 5 s: slow_import)
    task = make_task(runner=runner, sandbox_write=[str(run.path)], **config)
    started = time.monotonic()
    with pytest.raises(expected, match=match) as info:
        analyse(task, run.request(script("hostile.py", MARK + source)), timeout=timeout)
    took = time.monotonic() - started
    # Guards against a hang only; the margin over the timeout is measured in bench/.
    assert took < timeout + 5.0, f"{case} took {took:.2f} s"
    if expected is TaskCrashed:
        assert len(str(info.value)) < 10_000
        assert len(info.value.data.get("traceback", "")) <= 70_000
    assert_nothing_left(run.path)
    assert analyse(task, run.request(script("good.py", GOOD))) == {"n": 4}


@pytest.mark.parametrize("case", list(LEAVERS))
def test_processes_a_script_leaves_behind_are_killed(run, script, make_task, analyse, runner: str, case: str) -> None:
    task = make_task(runner=runner, sandbox_write=[str(run.path)])
    assert analyse(task, run.request(script("leaver.py", MARK + LEAVERS[case]))) == {"ok": True}
    pids = (run.path / "pids").read_text().split()
    assert len(pids) == 2, "the script did not start its process"
    assert_nothing_left(run.path)
    assert analyse(task, run.request(script("good.py", GOOD))) == {"n": 4}


def test_cancelled_run_leaves_nothing(run, script, make_task, analyse, runner: str) -> None:
    """A run cancelled while its setsid grandchild lives (the host's timeout
    or shutdown): both are gone when ``run`` has re-raised."""
    source = f"import subprocess, sys, time\ndef calculate_results(ctx):\n" \
        f"    p = subprocess.Popen({SLEEPER}, start_new_session=True)\n" \
        "    open('pids', 'a').write(f'{p.pid}\\n')\n    time.sleep(300)\n"
    task = make_task(runner=runner, sandbox_write=[str(run.path)])
    with pytest.raises(TimeoutError):
        analyse(task, run.request(script("stuck.py", MARK + source)), timeout=2.0)
    assert len((run.path / "pids").read_text().split()) == 2
    assert_nothing_left(run.path, within=0.5)
