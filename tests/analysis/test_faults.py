"""Scripts that fail, in real child processes: each ends in its status with
what helps to fix it, and the next request succeeds. The hostile cases
(hangs, exits, signals, fork bombs, escaping processes, floods) are in
test_containment.py."""

from __future__ import annotations

import time

import pytest

from bridgehost.errors import TaskCrashed
from bridgehost.jobs import Status

GOOD = "def calculate_results(ctx):\n    return {'n': len(ctx['raw_data']['trace']['force'])}\n"

FAULTS = {
    "raises": (
        "def calculate_results(ctx):\n    print('about to fail')\n    raise ValueError('bad trace')\n",
        {},
        r"fault\.py:calculate_results raised ValueError: bad trace",
    ),
    "syntax_error": ("def calculate_results(ctx)\n    return {}\n", {}, "raised SyntaxError"),
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
    name = script("segv.py", "import ctypes\ndef calculate_results(ctx):\n    return {'x': ctypes.string_at(0)}\n")
    with pytest.raises(TaskCrashed) as info:
        analyse(make_task(), run.request(name))
    output = info.value.data["output"]
    assert "Segmentation fault" in output and "segv.py" in output


def test_sys_exit_traceback_shows_where(run, script, make_task, analyse) -> None:
    with pytest.raises(TaskCrashed) as info:
        analyse(make_task(), run.request(script("exit.py", "import sys\ndef calculate_results(ctx):\n    sys.exit(3)\n")))
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
        analyse(make_task(output_kept_bytes=1000), run.request(name))
    output = info.value.data["output"]
    assert output.startswith("[... ") and "earlier bytes not kept]" in output
    assert output.endswith("line 19999\n")
    assert len(output.encode()) < 1100
