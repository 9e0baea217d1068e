"""A script touches only its own run: the confinement (Landlock) and the
watched zygote, each through a real ``bridgehost run`` and a real ZeroMQ
client. The matrix cases of ``harness.py`` (read or write outside, connect
to the host, stop the zygote, kill a sibling, patch ``os._exit``) run in
``test_scripts.py``; here are the checks they cannot make."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from bridgehost_analysis.sandbox import abi_version
from harness import HANG_BOUND_S, gone, request, wait_until

ABI = abi_version()


def needs(abi: int):
    return pytest.mark.skipif(
        abi > ABI, reason=f"needs Landlock ABI {abi}; this kernel ({os.uname().release}) offers {ABI or 'none'}"
    )


def call(host, script: str, source: str, task: str = "hostile.quick", **custom):
    (host.store.scripts_dir / script).write_text(source)
    with host.client() as client:
        return client.call(task, request(script, **custom), timeout_s=HANG_BOUND_S + 3)


def status(response) -> str:
    return "SUCCESS" if response.success else response.data.get("status")


def zygotes(host) -> list[psutil.Process]:
    return [p for p in host.descendants() if p.name() == "bh-zygote"]


@needs(1)
def test_reading_a_file_outside_the_run_is_a_permission_error(host) -> None:
    secret = host.outside / "secret.txt"
    response = call(host, "peek.py", f"def calculate_results(ctx):\n    return {{'s': open({str(secret)!r}).read()}}\n")
    assert status(response) == "CRASH"
    assert "PermissionError" in response.data["traceback"] and str(secret) in response.data["traceback"]


@needs(1)
def test_writing_outside_the_scratch_folder_is_a_permission_error(host) -> None:
    target = host.outside / "planted.txt"
    for where in (target, host.store.scripts_dir / "planted.py", host.store.run(**RUN).path / "results.json"):
        response = call(host, "plant.py", f"def calculate_results(ctx):\n    open({str(where)!r}, 'w').write('x')\n    return {{}}\n")
        assert status(response) == "CRASH", where
        assert "PermissionError" in response.data["traceback"]
    assert not target.exists() and not (host.store.scripts_dir / "planted.py").exists()


RUN = {"project_id": "hostile", "definition_id": "matrix", "run_id": "r1"}


@needs(4)
def test_a_tcp_connect_to_the_host_is_refused(host) -> None:
    port = int(host.endpoint.rpartition(":")[2])
    response = call(
        host, "dial.py",
        f"import socket\n\ndef calculate_results(ctx):\n    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n    return {{}}\n",
    )
    assert status(response) == "CRASH"
    assert "PermissionError" in response.data["traceback"]


@needs(6)
def test_signals_to_the_zygote_and_a_sibling_fail_with_eperm(host) -> None:
    """The script finds its zygote (its parent) and a waiting sibling (a
    ``bh-waiting`` child of the same zygote) and signals both: EPERM, and
    both are still there and not stopped afterwards."""
    source = """import errno, os, signal

def calculate_results(ctx):
    zygote = os.getppid()
    sibling = None
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            stat = open(f'/proc/{pid}/stat').read()
        except OSError:
            continue
        if '(bh-waiting)' in stat and int(stat.rpartition(')')[2].split()[1]) == zygote:
            sibling = int(pid)
    out = {'zygote': zygote, 'sibling': sibling}
    for name, sig in (('zygote', signal.SIGSTOP), ('sibling', signal.SIGKILL)):
        try:
            os.kill(out[name], sig)
            out[name + '_errno'] = 'none'
        except OSError as e:
            out[name + '_errno'] = errno.errorcode[e.errno]
    return out
"""
    response = call(host, "signals.py", source)
    assert response.success, response.error_message
    assert response.data["zygote_errno"] == "EPERM" and response.data["sibling_errno"] == "EPERM"
    assert psutil.Process(response.data["zygote"]).status() != psutil.STATUS_STOPPED
    assert not gone(response.data["sibling"])


def test_patching_os_exit_breaks_no_other_run(host) -> None:
    """The run that patches ``os._exit`` gets its own result; its process
    still exits (the child took its own reference first), and the next ten
    requests all succeed."""
    patched = call(host, "patch.py", "import os\n\ndef calculate_results(ctx):\n    os._exit = lambda code: None\n    return {'x': 1}\n")
    assert patched.success and patched.data == {"x": 1}
    good = "def calculate_results(ctx):\n    return {'n': len(ctx['cycle_history'])}\n"
    for _ in range(10):
        response = call(host, "good.py", good)
        assert response.success and response.data == {"n": 1}, response.error_message
    assert wait_until(lambda: host.runs() == [], HANG_BOUND_S), host.runs()


def test_numpy_scripts_still_work(host) -> None:
    source = "import numpy as np\n\ndef calculate_results(ctx):\n    return {'mean': float(np.mean(np.arange(5.0)))}\n"
    response = call(host, "np_mean.py", source)
    assert response.success and response.data == {"mean": 2.0}, response.error_message


def test_the_scratch_folder_is_tmpdir_and_is_gone_after_the_run(host) -> None:
    source = """import os, tempfile

def calculate_results(ctx):
    fd, path = tempfile.mkstemp(suffix='.csv')
    os.write(fd, b'a,b\\n1,2\\n')
    os.close(fd)
    os.mkdir(os.path.join(os.environ['TMPDIR'], 'sub'))
    return {'tmpdir': os.environ['TMPDIR'], 'file': path}
"""
    response = call(host, "scratch.py", source)
    assert response.success, response.error_message
    tmpdir, path = response.data["tmpdir"], response.data["file"]
    assert path.startswith(tmpdir + os.sep)
    assert wait_until(lambda: not os.path.exists(tmpdir), HANG_BOUND_S), f"{tmpdir} is still there"


def test_a_zygote_stopped_from_outside_is_replaced(host) -> None:
    """SIGSTOP (by pid, from outside the host) to every zygote of the host:
    each is noticed, killed with its processes and replaced; requests keep
    succeeding (a run that needed the old zygote may end CRASH saying it was
    lost, never TIMEOUT)."""
    old = zygotes(host)
    assert old, "no zygote to stop"
    for zygote in old:
        os.kill(zygote.pid, signal.SIGSTOP)
    good = "def calculate_results(ctx):\n    return {'ok': True}\n"
    statuses = [status(call(host, "ok.py", good)) for _ in range(8)]
    assert set(statuses) <= {"SUCCESS", "CRASH"}, statuses
    assert statuses[-3:] == ["SUCCESS"] * 3, statuses
    assert wait_until(lambda: all(gone(z.pid) for z in old), HANG_BOUND_S), "a stopped zygote is still there"
    assert "was stopped" in host.output()
    new = zygotes(host)
    assert new and not {z.pid for z in new} & {z.pid for z in old}


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_pools_work_inside_the_sandbox(host, method) -> None:
    """Both start a new interpreter (allowed: read and execute on the Python
    installation), which loads the script as ``__mp_main__`` to find the
    functions sent to it; their semaphores live in /dev/shm and the
    forkserver's socket in the run's TMPDIR. Before: a silent TIMEOUT."""
    source = f"""import multiprocessing as mp

def square(x):
    return x * x

def calculate_results(ctx):
    with mp.get_context({method!r}).Pool(2) as pool:
        return {{'squares': pool.map(square, range(5))}}
"""
    response = call(host, f"pool_{method}.py", source, task="hostile.roomy")
    assert response.success, f"{response.error_message}\n{response.data.get('output', '')[-2000:]}"
    assert response.data == {"squares": [0, 1, 4, 9, 16]}
