"""SIGKILL at random moments during writes: afterwards every file of the
run parses and holds either the old or the new content, never a mix.

- the host merging analysis results into ``results.json`` (``save_results``),
  killed at random delays and the instant a write's temporary file appears;
- a control program writing a run with the writer API (``Run.save``,
  ``save_results``, ``merge_results``, ``set_raw_trace``, ``append_cycle``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from bridgehost_analysis.datastore import Datastore
from harness import HostProcess, prepare_datastore, request

WAIT_S = 30.0
PAD = 200_000
"""Bytes of padding per result, so that a write takes long enough to be hit."""

SAVE_SCRIPT = """
def calculate_results(ctx):
    step = ctx["custom_params"]["step"]
    return {"step": step, "pad": chr(97 + step % 26) * ctx["custom_params"]["pad"]}
"""


def expected_result(step: int) -> dict:
    return {"step": step, "pad": chr(97 + step % 26) * PAD}


def read_json(path: Path):
    return msgspec.json.decode(path.read_bytes())


def kill_when_writing(host: HostProcess, folder: Path, stop: threading.Event) -> None:
    """SIGKILL the host the moment a temporary results file shows up."""
    while not stop.is_set():
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        if any(n.startswith(".results.json.") and n.endswith(".tmp") for n in names):
            host.kill()
            return
        time.sleep(0.0005)


def call_unless_killed(host: HostProcess, params: dict):
    """The response to a hostile.save request, or None if the host died first."""
    with host.client() as client:
        tid = client.send("hostile.save", params)
        deadline = time.monotonic() + WAIT_S
        while (answer := client.take_response(tid)) is None and host.alive():
            assert time.monotonic() < deadline, "no response and the host is alive: a hang"
            client.poll(0.05)
        return answer


def test_host_killed_during_200_result_writes_leaves_old_or_new_results(tmp_path: Path) -> None:
    host = HostProcess(tmp_path)
    prepare_datastore(host.store)
    (host.store.scripts_dir / "save.py").write_text(SAVE_SCRIPT)
    run = host.store.run("hostile", "save", "r1")
    run.save(project={}, configuration={})
    results = run.path / "results.json"
    rng = random.Random(1)
    host.start()
    written, kills, torn_writes_interrupted, step = 0, 0, 0, 1
    last_done = 0  # the step whose results are known to be on disk
    try:
        while written < 200:
            kill_now = written > 0 and written % 20 == 0 and kills < written // 20
            stop = threading.Event()
            if kill_now:
                kills += 1
                if kills % 2:
                    watcher = threading.Thread(target=kill_when_writing, args=(host, run.path, stop), daemon=True)
                else:
                    watcher = threading.Timer(rng.uniform(0.0, 0.3), host.kill)
                watcher.start()
            answer = call_unless_killed(host, request("save.py", step=step, pad=PAD) | {"definition_id": "save"})
            stop.set()
            if kill_now:
                watcher.join(WAIT_S)
                host.kill()  # if the call finished before the kill, kill now
                torn_writes_interrupted += any(n.endswith(".tmp") for n in os.listdir(run.path))
                on_disk = read_json(results)  # parses: never a torn file
                assert on_disk in (expected_result(last_done), expected_result(step)), on_disk["step"]
                last_done = on_disk["step"]
                host.start()
                if answer is None or on_disk["step"] != step:
                    continue  # resend this step to the new host
            assert answer is not None and answer.success, answer
            assert read_json(results) == expected_result(step)
            last_done, written, step = step, written + 1, step + 1
    finally:
        host.stop()
    assert kills == 9
    # At least one kill landed inside a write (it left its temporary file).
    assert torn_writes_interrupted >= 1
    for path in host.store.results_dir.rglob("*.json"):
        read_json(path)


WRITER = r"""
import sys
import numpy as np
from bridgehost_analysis.datastore import Datastore

run = Datastore(sys.argv[1]).run("safety", "writer", sys.argv[2])
print("ready", flush=True)
for step in range(1, 10**9):
    kind = step % 5
    pad = chr(97 + step % 26) * (step * 7919 % 20000)
    if kind == 0:
        run.save(project={"step": step, "pad": pad}, configuration={"step": step})
    elif kind == 1:
        run.save_results({"step": step, "pad": pad})
    elif kind == 2:
        run.merge_results({"merged": step})
    elif kind == 3:
        n = 1000 + step % 500
        run.set_raw_trace(t=np.arange(n, dtype=np.float64), force=np.full(n, float(step)))
    else:
        run.append_cycle({"step": step})
    print(step, flush=True)
"""


class Model:
    """What each file holds after each step of WRITER, replayed."""

    def __init__(self, last: int):
        self.states: list[dict] = [{}]
        state: dict = {}
        for step in range(1, last + 1):
            state = dict(state)
            kind = step % 5
            pad = chr(97 + step % 26) * (step * 7919 % 20000)
            if kind == 0:
                state["project.json"] = {"step": step, "pad": pad}
                state["configuration.json"] = {"step": step}
            elif kind == 1:
                state["results.json"] = {"step": step, "pad": pad}
            elif kind == 2:
                state["results.json"] = {**state.get("results.json", {}), "merged": step}
            elif kind == 3:
                n = 1000 + step % 500
                state["t"] = list(map(float, range(n)))
                state["force"] = [float(step)] * n
            else:
                state["cycles"] = [*state.get("cycles", []), {"step": step}]
            self.states.append(state)


def check_writer_run(store: Datastore, run_id: str, acked: int) -> None:
    """Each file holds what it held after step ``acked`` or ``acked + 1``."""
    run = store.run("safety", "writer", run_id)
    model = Model(acked + 1)
    old, new = model.states[acked], model.states[acked + 1]
    for name in ("project.json", "configuration.json", "results.json"):
        path = run.path / name
        found = read_json(path) if path.exists() else None
        assert found in (old.get(name), new.get(name)), f"{name} after step {acked}: {str(found)[:100]}"
    trace = run.raw_trace("trace")
    for channel in ("t", "force"):
        found = trace.get(channel)
        assert found in (old.get(channel), new.get(channel)), f"{channel} after step {acked}"
    assert run.cycle_history() in (old.get("cycles", []), new.get("cycles", []))


def test_writer_killed_at_random_moments_leaves_every_file_old_or_new(tmp_path: Path) -> None:
    store = Datastore(tmp_path / "datastore")
    rng = random.Random(2)
    writes, rounds = 0, 0
    while writes < 200 or rounds < 12:
        rounds += 1
        run_id = f"w{rounds}"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.root), run_id], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))  # a random moment in the writes (what is under test)
            assert proc.poll() is None, "the writer stopped by itself: it failed"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=WAIT_S)
        lines = proc.stdout.read().split()
        proc.stdout.close()
        acked = int(lines[-1]) if lines else 0
        writes += acked
        check_writer_run(store, run_id, acked)
    assert writes >= 200


def test_the_writer_check_catches_a_torn_or_a_stale_file(tmp_path: Path) -> None:
    """The check above is not vacuous: a half-written file, or one a step
    older than the last acknowledged write, fails it."""
    store = Datastore(tmp_path)
    run = store.run("safety", "writer", "x").create()
    (run.path / "results.json").write_bytes(b'{"step": 1, "pa')
    with pytest.raises(msgspec.DecodeError):
        check_writer_run(store, "x", 0)
    run.save_results(Model(1).states[1]["results.json"])  # step 1's, but step 2 (a merge) was acknowledged
    with pytest.raises(AssertionError, match="results.json after step 2"):
        check_writer_run(store, "x", 2)


def test_the_model_agrees_with_a_writer_that_is_not_killed(tmp_path: Path) -> None:
    store = Datastore(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", WRITER.replace("10**9", "13"), str(store.root), "full"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "12"
    check_writer_run(store, "full", 12)
    check_writer_run(store, "full", 11)  # step 12 (a save) counts as the "new" content of step 11
