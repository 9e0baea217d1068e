"""A deployment driven by config: the analysis round trip over ZeroMQ, as the
AutoCore seed's control program does it."""

import math
import os
import signal
import threading
import time

import numpy as np
import psutil

from bridgehost_analysis.traction import SCRIPT
from bridgehost_ipc.client import Client

def expected(run):
    force = np.load(run.path / "traces" / "trace" / "force.npy").astype(np.float64)
    return float(force.max()), math.fsum(force) / len(force)


def test_control_loop_round_trip(start_host, deployment, traction_run):
    host = start_host(deployment())
    with Client(host.endpoint) as client:
        tid = client.send("python.run_analysis", traction_run.request(SCRIPT))
        assert client.take_response(tid) is None  # a control loop's tick never blocks
        deadline = time.monotonic() + 20
        response = None
        while response is None and time.monotonic() < deadline:
            client.poll(0.05)
            response = client.take_response(tid)
    assert response is not None and response.transaction_id == tid
    assert response.success, response.error_message
    max_force, avg_force = expected(traction_run)
    assert response.data["max_force"] == max_force
    assert math.isclose(response.data["avg_force"], avg_force, rel_tol=1e-9)


def test_concurrent_clients_each_get_their_own_answers(start_host, deployment, traction_run):
    host = start_host(deployment())
    want = expected(traction_run)[0]
    results: dict[int, list] = {}

    def client_thread(n):
        with Client(host.endpoint) as client:
            tids = [client.send("python.run_analysis", traction_run.request(SCRIPT)) for _ in range(3)]
            answers = [client.call("host.ping", timeout_s=30)]  # interleaved with the pending ones
            deadline = time.monotonic() + 60
            got = {}
            while len(got) < len(tids) and time.monotonic() < deadline:
                client.poll(0.1)
                for tid in tids:
                    if tid not in got and (r := client.take_response(tid)) is not None:
                        got[tid] = r
            results[n] = [*answers, *(got.get(t) for t in tids)]

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for answers in results.values():
        assert answers[0].success and answers[0].topic == "host.ping"
        assert all(a is not None and a.success and a.data["max_force"] == want for a in answers[1:])


def test_hung_script_times_out_and_the_next_request_succeeds(start_host, deployment, traction_run):
    scripts = traction_run.store.root / "scripts"
    (scripts / "hang.py").write_text("def calculate_results(ctx):\n    while True:\n        pass\n")
    host = start_host(deployment(timeout=1))
    with Client(host.endpoint) as client:
        started = time.monotonic()
        hung = client.call("python.run_analysis", traction_run.request("hang.py"), timeout_s=30)
        took = time.monotonic() - started
        assert not hung.success
        assert hung.data["status"] == "TIMEOUT"
        assert "timeout_s of 1.0 s" in hung.error_message
        assert took < 10
        after = client.call("python.run_analysis", traction_run.request(SCRIPT), timeout_s=30)
    assert after.success
    assert host.settled() == []  # the hung script's processes are gone


def test_sigterm_answers_every_accepted_request_and_leaves_no_process(start_host, deployment, traction_run):
    scripts = traction_run.store.root / "scripts"
    (scripts / "slow.py").write_text("import time\n\ndef calculate_results(ctx):\n    time.sleep(60)\n    return {}\n")
    host = start_host(deployment(grace=0.5, timeout=120))
    with Client(host.endpoint) as client:
        tids = [client.send("python.run_analysis", traction_run.request("slow.py")) for _ in range(4)]
        deadline = time.monotonic() + 10
        while len(host.analyses()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # both concurrency slots have their analysis process
        children = host.descendants()
        assert len(children) >= 2
        os.kill(host.proc.pid, signal.SIGTERM)
        responses = {}
        deadline = time.monotonic() + 20
        while len(responses) < len(tids) and time.monotonic() < deadline:
            client.poll(0.1)
            for tid in tids:
                if tid not in responses and (r := client.take_response(tid)) is not None:
                    responses[tid] = r
    assert host.proc.wait(timeout=20) == 0
    assert sorted(responses) == sorted(tids)
    statuses = sorted(r.data["status"] for r in responses.values())
    assert statuses == ["CANCELLED"] * 4
    running = [r for r in responses.values() if "while the job ran" in r.error_message]
    assert len(running) == 2  # the two running ones got the grace period, then were cancelled
    # The analysis processes ran in their own sessions: they would outlive the
    # host as orphans if its shutdown had not killed them.
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


def test_sigterm_ends_the_host_while_a_sync_callable_still_runs(start_host, tmp_path):
    """A thread cannot be killed, but it must not hold a stopping host open:
    a supervisor's SIGTERM ends the process after the grace period."""
    started = tmp_path / "started"
    (tmp_path / "stuck.py").write_text(
        f"import pathlib, time\n\ndef run():\n    pathlib.Path({str(started)!r}).touch()\n    time.sleep(120)\n"
    )
    config = """
[host]
shutdown_grace_s = 0.5

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "stuck"
kind = "callable"
target = "stuck:run"
timeout_s = 300
"""
    host = start_host(config, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    with Client(host.endpoint) as client:
        tid = client.send("stuck", {})
        deadline = time.monotonic() + 20
        while not started.exists():
            assert time.monotonic() < deadline, host.output()
            time.sleep(0.05)
        os.kill(host.proc.pid, signal.SIGTERM)
        response = None
        deadline = time.monotonic() + 20
        while response is None and time.monotonic() < deadline:
            client.poll(0.1)
            response = client.take_response(tid)
    assert response is not None and response.data["status"] == "CANCELLED", host.output()
    assert host.proc.wait(timeout=20) == 0, host.output()


def test_sighup_stops_the_host_like_sigterm_and_answers_the_request_in_flight(start_host, tmp_path):
    """The terminal closing (SIGHUP) must not kill the host mid-request."""
    started = tmp_path / "started"
    (tmp_path / "slow_task.py").write_text(
        "import asyncio, pathlib\n\n"
        f"async def run():\n    pathlib.Path({str(started)!r}).touch()\n    await asyncio.sleep(1)\n    return {{'done': True}}\n"
    )
    config = """
[host]
shutdown_grace_s = 30

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "slow"
kind = "callable"
target = "slow_task:run"
"""
    host = start_host(config, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    with Client(host.endpoint) as client:
        tid = client.send("slow", {})
        deadline = time.monotonic() + 20
        while not started.exists():
            assert time.monotonic() < deadline, host.output()
            time.sleep(0.02)
        os.kill(host.proc.pid, signal.SIGHUP)
        response = None
        deadline = time.monotonic() + 20
        while response is None and time.monotonic() < deadline:
            client.poll(0.1)
            response = client.take_response(tid)
    assert host.proc.wait(timeout=20) == 0, host.output()
    assert response is not None and response.success and response.data == {"done": True}, host.output()
    assert "SIGHUP: stopping" in host.output()
