"""A deployment driven by config: the analysis round trip over ZeroMQ, as the
control program of AutoCore's manual, "Python Analysis Integration" does it."""

import math
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from bridgehost_analysis.sandbox import abi_version
from bridgehost_analysis.traction import SCRIPT
from bridgehost_ipc.client import Client

ZMQ_SERVED = """
[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"
"""
"""The start of a config whose tasks are requested over ZeroMQ."""

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
    _, alive = psutil.wait_procs(children, timeout=5)
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
""" + ZMQ_SERVED + """
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


def test_requests_queued_by_a_client_that_disconnects_end_cancelled_and_never_run(start_host, tmp_path):
    ran = tmp_path / "ran"
    (tmp_path / "busy_task.py").write_text(
        "import asyncio\n\n"
        f"async def run(params):\n    with open({str(ran)!r}, 'a') as f:\n        f.write(f\"{{params['n']}}\\n\")\n"
        "    await asyncio.sleep(params.get('s', 1.0))\n    return params\n"
    )
    config = ZMQ_SERVED + """
[[tasks]]
name = "busy"
kind = "callable"
target = "busy_task:run"
concurrency = 1
queue_size = 16
"""
    host = start_host(config, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    leaving = Client(host.endpoint)
    for n in range(5):
        leaving.send("busy", {"n": n})
    deadline = time.monotonic() + 20
    while not ran.exists():
        assert time.monotonic() < deadline, host.output()
        time.sleep(0.02)
    leaving.close()  # the first runs; four wait in the queue
    deadline = time.monotonic() + 20
    while host.output().count("cancelled: the request was withdrawn before it started") < 4:
        assert time.monotonic() < deadline, host.output()
        time.sleep(0.05)
    with Client(host.endpoint) as client:  # runs right after the first: the queue holds nothing else
        assert client.call("busy", {"n": 5, "s": 0}, timeout_s=20).success
    assert ran.read_text().split() == ["0", "5"]


CHAIN_SCRIPT = """
import json, time

import zmq


def calculate_results(ctx):
    params = ctx["custom_params"]
    with open(params["log"], "a") as f:
        f.write("ran\\n")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(params["endpoint"])
    request = {"transaction_id": 1, "timecode": 0, "topic": "python.run_analysis", "message_type": "request",
               "data": params["again"]}
    sock.send(json.dumps(request).encode())
    sock.recv()  # waits for its own request, which waits for this run: only the timeout ends it
"""


def test_a_self_request_chain_ends_with_the_first_timeout(start_host, traction_run, tmp_path):
    """A script that asks its own host to run itself, then waits: when its run
    ends TIMEOUT its connection closes, and its queued request is withdrawn
    (CANCELLED, never run) instead of starting the next link of the chain.
    With the sandbox off: with it, the script's connection never reaches the
    host (next test)."""
    (traction_run.store.root / "scripts" / "chain.py").write_text(CHAIN_SCRIPT)
    host = start_host(ANALYSIS_DEPLOYMENT_ONE_SLOT.replace("{sandbox}", 'sandbox = "off"'))
    log = tmp_path / "chain.log"
    link = {"log": str(log), "endpoint": host.endpoint}
    second = traction_run.request("chain.py", custom_params=link)  # would write "ran" a second time
    first = traction_run.request("chain.py", custom_params={**link, "again": second})
    with Client(host.endpoint) as client:
        response = client.call("python.run_analysis", first, timeout_s=30)
        assert response.data["status"] == "TIMEOUT", response
        deadline = time.monotonic() + 15
        while "cancelled: the request was withdrawn before it started" not in host.output():
            assert time.monotonic() < deadline, host.output()
            time.sleep(0.05)
        ok = client.call("python.run_analysis", traction_run.request(SCRIPT), timeout_s=30)
    assert ok.success, ok.error_message
    assert log.read_text().count("ran") == 1
    assert host.settled() == []


@pytest.mark.skipif(abi_version() < 4, reason=f"needs Landlock ABI 4 (TCP rules); this kernel offers {abi_version()}")
def test_with_the_sandbox_a_self_request_chain_cannot_start(start_host, traction_run, tmp_path):
    """``network = false`` (the default): the script's TCP connect to its
    host is refused by the kernel (ZeroMQ retries it in its I/O thread), so
    its request never reaches the host; the run ends at its timeout, alone."""
    (traction_run.store.root / "scripts" / "chain.py").write_text(CHAIN_SCRIPT)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    host = start_host(ANALYSIS_DEPLOYMENT_ONE_SLOT.replace("{sandbox}", f'sandbox_write = ["{log_dir}"]'))
    log = log_dir / "chain.log"
    link = {"log": str(log), "endpoint": host.endpoint}
    first = traction_run.request("chain.py", custom_params={**link, "again": traction_run.request("chain.py", custom_params=link)})
    with Client(host.endpoint) as client:
        response = client.call("python.run_analysis", first, timeout_s=30)
        assert response.data["status"] == "TIMEOUT", response
        ok = client.call("python.run_analysis", traction_run.request(SCRIPT), timeout_s=30)
    assert ok.success, ok.error_message
    assert log.read_text().count("ran") == 1
    assert host.output().count("running chain.py") == 1, host.output()
    assert "withdrawn" not in host.output()


ANALYSIS_DEPLOYMENT_ONE_SLOT = ZMQ_SERVED + """
[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "{datastore}"
timeout_s = 3
concurrency = 1
{sandbox}
"""
