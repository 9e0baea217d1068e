"""Hostile analysis scripts, each sent through the real ZeroMQ path to a real
``bridgehost run`` process: the client gets an error response that names the
cause, the next request succeeds, and no process of the script is left.

The cases and the judging are in ``harness.py`` (shared with
``bench/reliability.py``, which also measures how long after the timeout
each response came). Here the bound is only a generous "does not hang".
"""

from __future__ import annotations

import os
import signal

import pytest

from bridgehost_analysis.sandbox import abi_version
from harness import CASES, Case, gone, prepare_datastore, request, run_case, wait_response, wait_until

LANDLOCK_ABI = abi_version()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_script_is_contained(host, case: Case) -> None:
    if case.landlock_abi > LANDLOCK_ABI:
        pytest.skip(f"needs Landlock ABI {case.landlock_abi}; this kernel ({os.uname().release}) offers {LANDLOCK_ABI}")
    result = run_case(host, case)
    assert result.problems == [], f"{case.name}: {result.problems}\n--- host log tail:\n{host.output()[-2000:]}"


def test_host_answers_while_a_script_spins(host, module_dir) -> None:
    """The control side is never locked up: while a script spins on a CPU,
    host.ping and another task's request are answered; the script returns
    only once the test lets it (so the answers came while it ran)."""
    gate = module_dir / "spin.gate"
    gate.unlink(missing_ok=True)
    (host.store.scripts_dir / "spin.py").write_text(
        f"import os\n\ndef calculate_results(ctx):\n    while not os.path.exists({str(gate)!r}):\n"
        "        pass\n    return {'released': True}\n"
    )
    with host.client() as client:
        spinning = client.send("hostile.roomy", request("spin.py"))
        assert client.call("host.ping", timeout_s=30).success
        assert client.call("hostile.quick", request("good.py"), timeout_s=30).success
        assert client.take_response(spinning) is None
        gate.touch()
        answer = wait_response(client, spinning, within=30)
    assert answer is not None and answer.success and answer.data == {"released": True}


def test_huge_error_message_is_cut_but_names_the_exception(host, module_dir) -> None:
    """A 10 MB exception message reaches the client cut to a readable size,
    with its start (the exception type) and a marker of what was cut."""
    case = next(c for c in CASES if c.name == "exception_10mb")
    result = run_case(host, case)
    message = result.response.error_message
    assert "ValueError" in message[:200]
    assert "characters cut" in message
    assert len(message) <= 70_000
    assert len(result.response.data.get("traceback", "")) <= 70_000


def test_a_host_killed_with_sigkill_takes_its_analyses_with_it(start_host) -> None:
    """SIGKILL gives the host no chance to clean up. Its zygote sees the
    control socket close and kills every run's processes (each child also
    dies with the zygote, PR_SET_PDEATHSIG), so a supervisor's restart does
    not find the old runs still going, setsid'd grandchildren included."""
    host = start_host()
    prepare_datastore(host.store)
    pids_file = host.pids_dir / "stuck.pids"
    (host.store.scripts_dir / "stuck.py").write_text(
        "import os, subprocess, time\n\ndef calculate_results(ctx):\n"
        "    p = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        f"    open({str(pids_file)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')\n"
        "    time.sleep(600)\n"
    )
    with host.client() as client:
        client.send("hostile.roomy", request("stuck.py"))
        assert wait_until(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2, 30)
    pids = [int(p) for p in pids_file.read_text().split()]
    family = host.descendants()
    assert family, "the host has no zygote or run processes"
    host.kill()
    ended = wait_until(lambda: all(gone(p) for p in pids) and all(gone(p.pid) for p in family), 30)
    left = [p for p in pids if not gone(p)] + [p.pid for p in family if not gone(p.pid)]
    for pid in left:  # ours: the test started them through the host
        os.kill(pid, signal.SIGKILL)
    assert ended, f"still alive after the host's SIGKILL: {left}"
