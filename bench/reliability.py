"""Reliability figures: the hostile script matrix, load, and memory under malformed frames.

Starts real ``bridgehost run`` processes (loopback, free ports) in a temporary
folder, and prints one JSON line:

- ``hostile_cases``, ``hostile_contained``: the matrix of tests/hostile/harness.py
  (error response naming the cause, next request succeeds, no process left);
  ``not_contained`` names the others and why; ``timeout_margin_ms_max``: the
  latest a TIMEOUT response came after the task's ``timeout_s`` (aim: 250 ms);
- ``requests_sent``, ``responses_received``, ``duplicates``, ``lost``, ``busy``:
  CLIENTS clients sending REQUESTS ``load.echo`` requests as fast as they can
  to a task whose queue holds 64, counted by transaction id (most are BUSY);
  ``paced``: the same with at most 8 unanswered per client (most run);
- ``rss_growth_mb_per_100k_frames``: the host's RSS after FRAMES malformed
  frames minus before (after a warm-up), scaled to 100k;
- ``slow_reader_rss_mb``: the host's peak RSS while two clients each send a
  request for a 1 MB analysis result every 30 ms and never read, for
  ``--slow-reader-s`` seconds (default 60; aim <= 200);
  ``slow_reader_rss_after_mb``: its RSS 5 s after they disconnected;
- ``host_restarts``: times a host died and had to be started again (aim 0);
- ``orphan_processes``: processes of the scripts alive after the host's
  answer and its clean-up, plus host descendants left after it stopped (aim 0);
- ``loadavg``: the 1-minute load average when it finished (the machine is shared).

    uv run python bench/reliability.py [--requests 10000] [--clients 8] [--frames 100000] [--slow-reader-s 60]
    uv run python bench/reliability.py --only slow-reader --slow-reader-s 15   # that figure alone, quickly

Leaves nothing running: every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "hostile"))

import zmq

import harness
from bridgehost_ipc.protocol import encode, new_request

MAX_FRAME = 65536


def ensure_alive(host: harness.HostProcess, restarts: list[str], phase: str) -> None:
    if not host.alive():
        restarts.append(phase)
        host.start()


def hostile_matrix(folder: Path, restarts: list[str]) -> tuple[list[harness.CaseResult], int]:
    host = harness.HostProcess(folder)
    harness.prepare_datastore(host.store)
    host.start()
    results = []
    try:
        for case in harness.CASES:
            results.append(harness.run_case(host, case))
            ensure_alive(host, restarts, case.name)
    finally:
        left = host.descendants()
        host.stop()
    return results, len([p for p in left if not harness.gone(p.pid)])


def traffic(folder: Path, restarts: list[str], *, clients: int, requests: int, frames: int) -> dict:
    host = harness.HostProcess(folder, transport_extra=f"max_frame_bytes = {MAX_FRAME}")
    harness.prepare_datastore(host.store)
    host.start()
    try:
        started = time.monotonic()
        loaded = harness.load(host.endpoint, clients=clients, requests=requests, within=600)
        load_s = time.monotonic() - started
        started = time.monotonic()
        paced = harness.load(host.endpoint, clients=clients, requests=requests, window=8, within=600)
        paced_s = time.monotonic() - started
        ensure_alive(host, restarts, "load")
        rng = random.Random(1)
        harness.blast(host.endpoint, (harness.random_bad_message(rng, MAX_FRAME) for _ in range(5000)))
        before = host.rss_mb()
        started = time.monotonic()
        sent, answers = harness.blast(
            host.endpoint, (harness.random_bad_message(rng, MAX_FRAME) for _ in range(frames)), within=1800
        )
        fuzz_s = time.monotonic() - started
        growth = host.rss_mb() - before
        ensure_alive(host, restarts, "fuzz")
        rss_after = host.rss_mb()
    finally:
        host.stop()
    return {
        "requests_sent": loaded.requests_sent,
        "responses_received": loaded.responses_received,
        "duplicates": loaded.duplicates,
        "lost": loaded.lost,
        "busy": loaded.busy,
        "wrong_data": loaded.wrong_data,
        "load_requests_per_s": round(loaded.requests_sent / load_s),
        "paced": {  # the same with at most 8 unanswered requests per client: most run
            "requests_sent": paced.requests_sent,
            "responses_received": paced.responses_received,
            "duplicates": paced.duplicates,
            "lost": paced.lost,
            "busy": paced.busy,
            "succeeded": paced.responses_received - paced.busy - paced.other_errors,
            "wrong_data": paced.wrong_data,
            "requests_per_s": round(paced.requests_sent / paced_s),
        },
        "frames_sent": sent,
        "frames_answered": answers,
        "frames_per_s": round(sent / fuzz_s),
        "host_rss_mb": round(rss_after, 1),
        "rss_growth_mb_per_100k_frames": round(growth * 100_000 / frames, 2),
    }


BIG_SCRIPT = "def calculate_results(ctx):\n    return {'blob': 'x' * 1_000_000}\n"


def slow_readers(folder: Path, restarts: list[str], *, duration_s: float, clients: int = 2) -> dict:
    """Peak host RSS while ``clients`` DEALERs ask for 1 MB results every
    30 ms and never read (each buffers next to nothing itself, so what is
    not sent stays with the host: its worst case)."""
    host = harness.HostProcess(folder)
    harness.prepare_datastore(host.store)
    (host.store.scripts_dir / "big.py").write_text(BIG_SCRIPT)
    host.start()
    socks = []
    try:
        for _ in range(clients):
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.RCVHWM, 1)
            sock.setsockopt(zmq.RCVBUF, 65536)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(host.endpoint)
            socks.append(sock)
        before = peak = host.rss_mb()
        data = harness.request("big.py")
        tid, started = 0, time.monotonic()
        next_send = started
        while (now := time.monotonic()) - started < duration_s:
            if now >= next_send:
                tid += 1
                for sock in socks:
                    sock.send(encode(new_request(tid, "hostile.quick", data)))
                next_send += 0.03
            peak = max(peak, host.rss_mb())
            time.sleep(0.01)
        for sock in socks:
            sock.close(linger=0)
        socks = []
        time.sleep(5)
        after = host.rss_mb()
        ensure_alive(host, restarts, "slow readers")
    finally:
        for sock in socks:
            sock.close(linger=0)
        host.stop()
    return {
        "slow_reader_rss_mb": round(peak, 1),
        "slow_reader_rss_before_mb": round(before, 1),
        "slow_reader_rss_after_mb": round(after, 1),
        "slow_reader_requests": tid * clients,
        "slow_reader_s": duration_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--slow-reader-s", type=float, default=60.0, help="seconds of the slow-reader figure")
    parser.add_argument("--only", choices=["slow-reader"], help="measure only this figure")
    args = parser.parse_args()
    if args.only == "slow-reader":
        with tempfile.TemporaryDirectory(prefix="bh-reliability-") as tmp:
            restarts: list[str] = []
            line = slow_readers(Path(tmp), restarts, duration_s=args.slow_reader_s)
        print(json.dumps({**line, "host_restarts": len(restarts), "loadavg": round(os.getloadavg()[0], 2)}))
        return
    restarts: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bh-reliability-") as tmp:
        matrix_dir, traffic_dir, slow_dir = Path(tmp, "matrix"), Path(tmp, "traffic"), Path(tmp, "slow")
        for folder in (matrix_dir, traffic_dir, slow_dir):
            folder.mkdir()
        results, left_in_host = hostile_matrix(matrix_dir, restarts)
        figures = traffic(traffic_dir, restarts, clients=args.clients, requests=args.requests, frames=args.frames)
        figures |= slow_readers(slow_dir, restarts, duration_s=args.slow_reader_s)
    margins = [r.margin_s for r in results if r.case.expected_s and r.response is not None]
    line = {
        "hostile_cases": len(results),
        "hostile_contained": sum(r.contained for r in results),
        "not_contained": {r.case.name: r.problems for r in results if not r.contained},
        "timeout_margin_ms_max": round(max(margins) * 1000, 1) if margins else None,
        "case_ms": {r.case.name: round(r.elapsed_s * 1000, 1) for r in results},
        **figures,
        "host_restarts": len(restarts),
        "orphan_processes": sum(len(r.leftover_pids) for r in results) + left_in_host,
        "duration_s": round(time.monotonic() - started, 1),
        "loadavg": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
