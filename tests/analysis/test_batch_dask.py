"""bridgehost reanalyze on Dask: a real ``dask scheduler`` and two real
``dask worker`` processes on loopback ports (shared by this module's tests,
stopped by PID), and a real LocalCluster started by ``--scheduler local``.
Each worker forks every run from its own zygote; a worker killed mid-batch
has its runs run again elsewhere, each counted once."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

distributed = pytest.importorskip("distributed")

from bridgehost_analysis.batch import BadBatch, Options, reanalyze
from bridgehost_analysis.batch.provenance import RECORDS_DIR
from bridgehost_analysis.datastore import Datastore

DASK = str(Path(sys.executable).with_name("dask"))
COUNT = """
def calculate_results(ctx):
    if ctx["run_id"].endswith("3"):
        raise ValueError("no good")
    return {"n": len(ctx["cycle_history"]), "pid_differs": True}
"""
SLOW = """
import time
def calculate_results(ctx):
    time.sleep(0.25)
    return {"value": 2.5}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(root: Path, count: int, script: str) -> Datastore:
    store = Datastore(root)
    store.scripts_dir.mkdir(parents=True)
    (store.scripts_dir / "s.py").write_text(textwrap.dedent(script))
    for i in range(count):
        run = store.run("acme", "traction", f"r{i:02d}")
        run.save(project={"customer": "acme"})
        run.append_cycle({"cycle_index": 1})
    return store


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, os.environ.get("BH_CLI", "-m"), *([] if os.environ.get("BH_CLI") else ["bridgehost.cli"]), "reanalyze", *args, "--no-progress"],
        capture_output=True, text=True, timeout=timeout,
    )


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each (in order: workers before their scheduler), SIGKILL what
    has not exited within a few seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_worker(address: str, name: str, prefix: list[str] | None = None) -> subprocess.Popen:
    command = [DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name]
    return subprocess.Popen((prefix or []) + command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_workers(address: str, count: int) -> None:
    with distributed.Client(address, timeout=60) as client:
        client.wait_for_workers(count, timeout=90)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    """``dask scheduler`` and two ``dask worker`` processes (no nanny, so a
    worker's PID is the worker) on 127.0.0.1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    workers = [start_worker(address, f"w{i}") for i in range(2)]
    try:
        wait_workers(address, 2)
        yield {"address": address, "scheduler": scheduler, "workers": workers}
    finally:
        stop([*workers, scheduler])


def test_a_batch_on_dask_scheduler_and_workers(cluster: dict, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", 12, COUNT)
    out = tmp_path / "out.jsonl"
    done = cli(str(store.root), "--script", "s.py", "--scheduler", cluster["address"], "--output", str(out), "--save")
    assert done.returncode == 1, done.stderr  # r03 crashes
    assert done.stdout.strip().splitlines()[-1].startswith("reanalyze: 11 ok, 1 failed (CRASH 1), 0 skipped;")
    rows = {r["run"]: r for r in rows_of(out)}
    assert len(rows) == 12 and rows["acme/traction/r00"]["n"] == 1
    assert "raised ValueError: no good" in rows["acme/traction/r03"]["error"]
    assert store.run("acme", "traction", "r00").results() == {"n": 1, "pid_differs": True}  # merged by the worker
    assert len(list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}/*.json"))) == 12
    again = cli(str(store.root), "--script", "s.py", "--scheduler", cluster["address"], "--save")
    assert again.stdout.strip().splitlines()[-1].startswith("reanalyze: 0 ok, 1 failed (CRASH 1), 11 skipped;")


def test_a_scheduler_that_does_not_answer_is_named(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", 1, COUNT)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BadBatch, match=f"the Dask scheduler at {address} did not answer within 10 s"):
        reanalyze(Options(datastore=store.root, script="s.py", scheduler=address, progress=False))
    assert not list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}/*.json"))


def test_a_listener_that_never_speaks_dask_is_named_and_exits_2(tmp_path: Path) -> None:
    """A port that accepts the TCP connection and then says nothing (a
    firewall's tarpit, a service that is not Dask): the command gives up
    after its connect timeout with the address in the message, instead of
    waiting forever for the Dask handshake."""
    store = make_store(tmp_path / "ds", 1, COUNT)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes into the backlog; nobody accepts or answers
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        done = cli(str(store.root), "--script", "s.py", "--scheduler", address, timeout=90)
    assert done.returncode == 2, done.stderr
    assert f"the Dask scheduler at {address} did not answer within 10 s" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}/*.json"))


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) to hide the datastore from a worker")
def test_a_worker_that_cannot_see_the_datastore_fails_the_batch_naming_it(cluster: dict, tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", 2, COUNT)
    hide = f"mount -t tmpfs none {tmp_path} && exec \"$@\""
    blind = start_worker(cluster["address"], "blind", ["unshare", "-m", "sh", "-c", hide, "sh"])
    try:
        try:
            wait_workers(cluster["address"], 3)
        except Exception:
            pytest.skip(f"a worker in its own mount namespace did not start here: {blind.stderr.read()[-500:] if blind.poll() is not None else ''}")
        done = cli(str(store.root), "--script", "s.py", "--scheduler", cluster["address"])
        assert done.returncode != 0
        assert "cannot see the datastore" in done.stderr and str(store.root) in done.stderr
        assert "tcp://127.0.0.1:" in done.stderr  # the worker's address
        assert not list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}/*.json"))
    finally:
        stop([blind])


def test_the_analysis_task_runs_online_requests_on_dask(cluster: dict, tmp_path: Path, make_task, analyse) -> None:
    """``runner = "dask"``: the same request and reply, each run forked on a
    worker (whose PID is not this process's child), the same statuses."""
    from bridgehost.errors import InvalidField, TaskCrashed

    store = make_store(tmp_path / "datastore", 4, COUNT)
    (store.scripts_dir / "where.py").write_text("import os\ndef calculate_results(ctx):\n    return {'zygote': os.getppid()}\n")
    task = make_task(runner="dask", scheduler=cluster["address"], timeout_s=30)
    ids = {"project_id": "acme", "definition_id": "traction"}
    assert analyse(task, {"script": "s.py", "run_id": "r00", **ids}) == {"n": 1, "pid_differs": True}
    zygote = analyse(task, {"script": "where.py", "run_id": "r01", **ids})["zygote"]
    assert psutil.Process(zygote).ppid() in {p.pid for p in cluster["workers"]}  # the zygote is a worker's
    with pytest.raises(TaskCrashed, match="raised ValueError: no good"):
        analyse(task, {"script": "s.py", "run_id": "r03", **ids})
    with pytest.raises(InvalidField, match="scheduler"):
        make_task(runner="dask")


def test_an_online_run_on_dask_past_its_timeout_is_killed_on_the_worker(cluster: dict, tmp_path: Path, make_task, analyse) -> None:
    """A hung script on a worker: the request ends in the host's timeout,
    and the worker kills the run's process by the task's deadline (Dask
    does not interrupt a running task: the worker's own deadline does), so
    no process of the run is left running there."""
    store = make_store(tmp_path / "datastore", 1, COUNT)
    (store.scripts_dir / "hang.py").write_text("import time\ndef calculate_results(ctx):\n    time.sleep(600)\n")
    task = make_task(runner="dask", scheduler=cluster["address"], timeout_s=2)
    ids = {"project_id": "acme", "definition_id": "traction", "run_id": "r00"}
    assert analyse(task, {"script": "s.py", **ids}) == {"n": 1, "pid_differs": True}  # the workers' zygotes are up

    def running_on_workers() -> list[psutil.Process]:
        found = []
        for worker in cluster["workers"]:
            with contextlib.suppress(psutil.NoSuchProcess):
                found += [p for p in psutil.Process(worker.pid).children(recursive=True) if p.name() == "bh-analysis"]
        return found

    seen: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            seen.extend(p.pid for p in running_on_workers())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(TimeoutError):
            analyse(task, {"script": "hang.py", **ids}, timeout=2)
    finally:
        watching.set()
        watcher.join()
    assert seen, "the hung run was never seen running on a worker"
    deadline = time.monotonic() + 30  # a no-hang bound; the worker's deadline is timeout_s + 1 s
    while running_on_workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_on_workers() == []


def test_a_worker_killed_mid_batch_has_its_runs_run_elsewhere_counted_once(cluster: dict, tmp_path: Path) -> None:
    """Last in the module: it leaves one worker."""
    store = make_store(tmp_path / "ds", 30, SLOW)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, os.environ.get("BH_CLI", "-m"), *([] if os.environ.get("BH_CLI") else ["bridgehost.cli"]), "reanalyze", str(store.root), "--script", "s.py",
         "--scheduler", cluster["address"], "--output", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 90
    while len(list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}/*.json"))) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    victim = cluster["workers"][0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stdout.strip().splitlines()[-1].startswith("reanalyze: 30 ok, 0 failed, 0 skipped;")
    rows = rows_of(out)
    assert sorted(r["run"] for r in rows) == sorted(f"acme/traction/r{i:02d}" for i in range(30))
    assert all(r["status"] == "SUCCESS" and r["value"] == 2.5 for r in rows)


def test_local_cluster(tmp_path: Path) -> None:
    """``--scheduler local``: a LocalCluster of 2 worker processes (1 thread
    each) on 127.0.0.1, started for the batch and stopped after."""
    store = make_store(tmp_path / "ds", 10, COUNT)
    out = tmp_path / "out.csv"
    done = cli(str(store.root), "--script", "s.py", "--scheduler", "local", "--workers", "2", "--output", str(out))
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("reanalyze: 9 ok, 1 failed (CRASH 1), 0 skipped;")
    assert len(out.read_text().splitlines()) == 11
