"""What the hostile tests and ``bench/reliability.py`` share: a real
``bridgehost run`` process we start and stop by PID, the hostile script
matrix, the load generator and the malformed-frame generator.

Everything talks to the host over real ZeroMQ sockets on 127.0.0.1 (a free
port each time) or ``ipc://`` in a temporary folder. Nothing here is a
fixture, so the bench can use it without pytest.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
import zmq

from bridgehost_analysis.datastore import Datastore
from bridgehost_ipc.client import Client
from bridgehost_ipc.protocol import CommandMessage, MessageType, decode, encode, new_request

HERE = Path(__file__).parent
QUICK_TIMEOUT_S = 3.0
"""``timeout_s`` of ``hostile.quick``, the task for scripts that never end by themselves."""
QUICK_MEMORY_MB = 256
HANG_BOUND_S = 15.0
"""How much later than expected a response may come before a test calls it a hang."""

HOST_CONFIG = """
[host]
name = "hostile"
shutdown_grace_s = 2

[[transports]]
kind = "zmq"
endpoint = "{endpoint}"
{transport_extra}

[[triggers]]
kind = "zmq"

# Scripts that never end by themselves: a short timeout, a small memory limit.
[[tasks]]
name = "hostile.quick"
kind = "analysis"
datastore = "{datastore}"
sandbox_write = ["{pids}"]  # where scripts record their pids for the checks
timeout_s = {quick_timeout}
memory_limit_mb = {quick_memory}
concurrency = 2
queue_size = 16

# Scripts that end by themselves after heavy output or a huge value.
[[tasks]]
name = "hostile.roomy"
kind = "analysis"
datastore = "{datastore}"
sandbox_write = ["{pids}"]  # where scripts record their pids for the checks
timeout_s = 60
concurrency = 1
queue_size = 16

# Results merged into the run's results.json (the crash-during-write test).
[[tasks]]
name = "hostile.save"
kind = "analysis"
datastore = "{datastore}"
sandbox_write = ["{pids}"]  # where scripts record their pids for the checks
timeout_s = 60
save_results = true
concurrency = 1
queue_size = 16

# An echo in a worker thread, with a small queue, for the load test.
[[tasks]]
name = "load.echo"
kind = "callable"
target = "copy:copy"
concurrency = 4
queue_size = {load_queue}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition, within: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


class HostProcess:
    """``bridgehost run`` on a generated config in ``folder``; stopped by PID only.

    ``endpoint`` defaults to a free loopback TCP port. ``transport_extra`` is
    TOML appended to the ``[[transports]]`` table (CURVE keys, ipc_mode).
    """

    def __init__(
        self,
        folder: Path,
        *,
        endpoint: str | None = None,
        transport_extra: str = "",
        load_queue: int = 64,
        client_kwargs: dict[str, Any] | None = None,
    ):
        self.folder = folder
        self.store = Datastore(folder / "datastore")
        self.pids_dir = folder / "pids"
        """The one folder outside its scratch folder a script may write:
        where it records the pids of its processes."""
        self.pids_dir.mkdir(exist_ok=True)
        self.outside = folder / "forbidden"
        """A folder no script may read or write (``read_outside``, ``write_outside``)."""
        self.outside.mkdir(exist_ok=True)
        (self.outside / "secret.txt").write_text("not for scripts")
        self.endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        self.client_kwargs = client_kwargs or {}
        self.config = folder / "host.toml"
        self.config.write_text(
            HOST_CONFIG.format(
                endpoint=self.endpoint,
                transport_extra=transport_extra,
                datastore=self.store.root,
                pids=self.pids_dir,
                quick_timeout=QUICK_TIMEOUT_S,
                quick_memory=QUICK_MEMORY_MB,
                load_queue=load_queue,
            )
        )
        self.log = folder / "host.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, within: float = 30.0) -> HostProcess:
        """Start the host and wait until it answers ``host.ping``."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridgehost.cli", "run", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        with self.client() as client:
            try:
                client.wait_ready(within, alive=self.alive)
            except (ConnectionError, TimeoutError) as e:
                raise AssertionError(f"{e} (exit code {self.proc.poll()}):\n{self.output()}") from None
        return self

    def client(self, **kwargs: Any) -> Client:
        return Client(self.endpoint, **{**self.client_kwargs, **kwargs})

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def descendants(self) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.pid).children(recursive=True) if not gone(p.pid)]
        except psutil.NoSuchProcess:
            return []

    def runs(self) -> list[psutil.Process]:
        """Descendants other than the analysis zygote (``bh-zygote``) and the
        children it keeps forked, waiting for a run (``bh-waiting``): what
        runs now, or was left behind. The waiting pool is refilled as runs
        start, so counting every descendant would race with its forks."""
        found = []
        for p in self.descendants():
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.name() not in ("bh-zygote", "bh-waiting") and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        return found

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def kill(self) -> None:
        """SIGKILL the host (not its children: they are what a crash leaves)."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)  # type: ignore[union-attr]

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after 30 s; its return code."""
        if not self.alive():
            return None if self.proc is None else self.proc.returncode
        children = self.descendants()
        os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        for child in children:  # leave nothing behind even if the host failed to
            if not gone(child.pid):
                child.kill()
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# -- the hostile script matrix --------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile script. ``statuses``: the acceptable response statuses
    (SUCCESS for a script that does return); ``words``: one of these must be
    in the error message (case-insensitive), so the client learns the cause."""

    name: str
    source: str
    statuses: tuple[str, ...]
    words: tuple[str, ...] = ()
    task: str = "hostile.quick"
    expected_s: float = 0.0
    """When the response is due: the task's timeout for a TIMEOUT case, else 0."""
    landlock_abi: int = 0
    """The Landlock ABI that contains it (``bridgehost_analysis.sandbox``);
    0: contained on any kernel."""


_PIDS = """
import os

def record():
    # each process of the run appends its pid, so the test can check they all died
    with open(PIDS, "a") as f:
        f.write(f"{os.getpid()}\\n")
"""


def _script(body: str) -> str:
    return f"PIDS = __PIDS__\n{_PIDS}\n{body}"


FORK_DEPTH = 7
"""The fork bomb forks this deep: 2**7 = 128 processes. Bounded by the script
itself too, because this machine is shared and root ignores RLIMIT_NPROC."""

CASES: tuple[Case, ...] = (
    Case(
        "infinite_loop",
        _script("def calculate_results(ctx):\n    record()\n    while True:\n        pass\n"),
        ("TIMEOUT",), ("timeout_s",), expected_s=QUICK_TIMEOUT_S,
    ),
    Case(
        "sleep_forever",
        _script("import time\n\ndef calculate_results(ctx):\n    record()\n    time.sleep(10**6)\n"),
        ("TIMEOUT",), ("timeout_s",), expected_s=QUICK_TIMEOUT_S,
    ),
    Case(
        "sys_exit_3",
        _script("import sys\n\ndef calculate_results(ctx):\n    record()\n    sys.exit(3)\n"),
        ("CRASH",), ("exited with code 3",),
    ),
    Case(
        "os_exit_0",
        _script("def calculate_results(ctx):\n    record()\n    os._exit(0)\n"),
        ("CRASH",), ("exited with code 0",),
    ),
    Case(
        "segfault",
        _script("import ctypes\n\ndef calculate_results(ctx):\n    record()\n    ctypes.string_at(0)\n"),
        ("CRASH",), ("SIGSEGV",),
    ),
    Case(
        "memory_10x_limit",
        _script(f"def calculate_results(ctx):\n    record()\n    return {{'x': bytearray({10 * QUICK_MEMORY_MB} << 20)}}\n"),
        ("CRASH",), ("MemoryError", "memory"),
    ),
    Case(
        "fork_bomb",
        _script(
            "import time\n\ndef calculate_results(ctx):\n    record()\n"
            f"    for _ in range({FORK_DEPTH}):\n        os.fork()\n        record()\n    time.sleep(10**6)\n"
        ),
        # Either the timeout ends it, or a process limit makes fork() fail.
        ("TIMEOUT", "CRASH"), ("timeout_s", "fork", "resource", "process"), expected_s=QUICK_TIMEOUT_S,
    ),
    Case(
        "grandchild",
        _script(
            "import subprocess\n\ndef calculate_results(ctx):\n    record()\n"
            "    p = subprocess.Popen(['sleep', '1000'])\n"
            "    with open(PIDS, 'a') as f:\n        f.write(f'{p.pid}\\n')\n    return {'started': p.pid}\n"
        ),
        ("SUCCESS",),
    ),
    Case(
        "grandchild_setsid",
        _script(
            "import subprocess\n\ndef calculate_results(ctx):\n    record()\n"
            "    p = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
            "    with open(PIDS, 'a') as f:\n        f.write(f'{p.pid}\\n')\n    return {'started': p.pid}\n"
        ),
        ("SUCCESS",),
    ),
    Case(
        "double_fork_daemon",
        _script(
            "import time\n\ndef calculate_results(ctx):\n    record()\n"
            "    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
            "            record()\n            time.sleep(1000)\n        os._exit(0)\n"
            "    time.sleep(0.2)\n    return {'daemonized': True}\n"
        ),
        ("SUCCESS",),
    ),
    Case(
        "stdout_1gib",
        _script(
            "import sys\n\ndef calculate_results(ctx):\n    record()\n    chunk = 'x' * (1 << 20) + '\\n'\n"
            "    for _ in range(1024):\n        sys.stdout.write(chunk)\n    sys.stdout.flush()\n"
            "    return {'wrote_mib': 1024}\n"
        ),
        ("CRASH",), ("output_kill_bytes",), task="hostile.roomy",
    ),
    Case(
        "return_1gib",
        _script("def calculate_results(ctx):\n    record()\n    return {'blob': 'x' * (1 << 30)}\n"),
        ("CRASH",), ("max_result_bytes", "MemoryError"), task="hostile.roomy",
    ),
    Case(
        "return_nan",
        _script("def calculate_results(ctx):\n    record()\n    return {'mean': float('nan')}\n"),
        ("CRASH",), ("nan",),
    ),
    Case(
        "return_numpy_array",
        _script("import numpy as np\n\ndef calculate_results(ctx):\n    record()\n    return {'a': np.arange(3)}\n"),
        ("CRASH",), ("ndarray",), task="hostile.roomy",  # importing numpy may take seconds on a loaded machine
    ),
    Case(
        "return_set",
        _script("def calculate_results(ctx):\n    record()\n    return {'s': {1, 2}}\n"),
        ("CRASH",), ("set",),
    ),
    Case(
        "return_custom_class",
        _script("class Peak:\n    pass\n\ndef calculate_results(ctx):\n    record()\n    return {'p': Peak()}\n"),
        ("CRASH",), ("Peak",),
    ),
    Case(
        "exception_10mb",
        _script("def calculate_results(ctx):\n    record()\n    raise ValueError('x' * 10_000_000)\n"),
        ("CRASH",), ("ValueError",),
    ),
    Case(
        "read_outside",
        _script("def calculate_results(ctx):\n    record()\n"
                "    return {'secret': open(os.path.join(__OUTSIDE__, 'secret.txt')).read()}\n"),
        ("CRASH",), ("PermissionError",), landlock_abi=1,
    ),
    Case(
        "write_outside",
        _script("def calculate_results(ctx):\n    record()\n"
                "    open(os.path.join(__OUTSIDE__, 'written.txt'), 'w').write('mine')\n    return {'wrote': True}\n"),
        ("CRASH",), ("PermissionError",), landlock_abi=1,
    ),
    Case(
        "connect_to_the_host",
        _script("import socket\n\ndef calculate_results(ctx):\n    record()\n"
                "    socket.create_connection(('127.0.0.1', __PORT__), timeout=5).close()\n    return {'connected': True}\n"),
        ("CRASH",), ("PermissionError",), landlock_abi=4,
    ),
    Case(
        "stop_the_zygote",
        _script("import signal\n\ndef calculate_results(ctx):\n    record()\n"
                "    os.kill(os.getppid(), signal.SIGSTOP)\n    return {'stopped': os.getppid()}\n"),
        ("CRASH",), ("PermissionError",), landlock_abi=6,
    ),
    Case(
        "kill_a_sibling",
        _script(
            "import signal\n\ndef calculate_results(ctx):\n    record()\n"
            "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "        try:\n"
            "            stat = open(f'/proc/{pid}/stat').read()\n"
            "        except OSError:\n            continue\n"
            "        # a waiting child of the same zygote (never another host's)\n"
            "        if '(bh-waiting)' in stat and int(stat.rpartition(')')[2].split()[1]) == os.getppid():\n"
            "            os.kill(int(pid), signal.SIGKILL)\n            return {'killed': int(pid)}\n"
            "    raise RuntimeError('no waiting sibling found')\n"
        ),
        ("CRASH",), ("PermissionError",), landlock_abi=6,
    ),
    Case(
        "patch_os_exit",
        _script("def calculate_results(ctx):\n    record()\n    os._exit = lambda code: None\n    return {'x': 1}\n"),
        ("SUCCESS",),
    ),
    Case(
        "self_request_chain",
        _script(
            "import json\n\nimport zmq\n\ndef calculate_results(ctx):\n    record()\n"
            "    sock = zmq.Context.instance().socket(zmq.DEALER)\n"
            "    sock.connect('tcp://127.0.0.1:__PORT__')\n"
            "    data = {'script': 'self_request_chain.py', 'project_id': 'hostile', 'definition_id': 'matrix', 'run_id': 'r1'}\n"
            "    sock.send(json.dumps({'transaction_id': 1, 'timecode': 0, 'topic': 'hostile.quick',\n"
            "                          'message_type': 'request', 'data': data}).encode())\n"
            "    sock.recv()  # its own request waits for this run: only the timeout ends it\n"
        ),
        # The sandbox refuses the connect (ABI 4); without it the transport
        # withdraws the queued request when the run's connection closes.
        ("TIMEOUT",), ("timeout_s",), expected_s=QUICK_TIMEOUT_S,
    ),
    Case(
        "slow_import_5s",
        _script("import time\nrecord()\ntime.sleep(5)\n\ndef calculate_results(ctx):\n    return {}\n"),
        ("TIMEOUT",), ("timeout_s",), expected_s=QUICK_TIMEOUT_S,
    ),
)

GOOD_SCRIPT = "def calculate_results(ctx):\n    return {'n': len(ctx['cycle_history'])}\n"
RUN_IDS = {"project_id": "hostile", "definition_id": "matrix", "run_id": "r1"}
MAX_HOST_GROWTH_MB = 200
"""What one hostile script may add to the host's RSS (its output and result
must not be held whole: 1 GiB of either would show)."""
MAX_ERROR_CHARS = 1 << 20
"""An error message longer than this is not one a person can read."""


def prepare_datastore(store: Datastore) -> None:
    """The scripts of every case, a good script, and the run they all analyse."""
    store.scripts_dir.mkdir(parents=True, exist_ok=True)
    (store.scripts_dir / "good.py").write_text(GOOD_SCRIPT)
    run = store.run(**RUN_IDS)
    run.save(project={"customer": "ACME"}, configuration={"speed": 10.0})
    run.append_cycle({"cycle_index": 1})


def request(script: str, **custom: Any) -> dict[str, Any]:
    return {"script": script, **RUN_IDS, "custom_params": custom}


@dataclass
class CaseResult:
    case: Case
    response: CommandMessage | None
    elapsed_s: float
    next_ok: bool
    leftover_pids: list[int]
    descendants_before: int
    descendants_after: int
    problems: list[str] = field(default_factory=list)

    @property
    def contained(self) -> bool:
        return not self.problems

    @property
    def margin_s(self) -> float:
        """How long after it was due the response came."""
        return self.elapsed_s - self.case.expected_s


def run_case(host: HostProcess, case: Case, settle_s: float = HANG_BOUND_S) -> CaseResult:
    """Send ``case`` to ``host`` over ZeroMQ and judge the outcome: the
    response and its message, a good request right after, and that every
    process the script started is gone."""
    pids_file = host.pids_dir / f"{case.name}.pids"
    pids_file.unlink(missing_ok=True)
    source = case.source.replace("__PIDS__", repr(str(pids_file)))
    source = source.replace("__OUTSIDE__", repr(str(host.outside)))
    source = source.replace("__PORT__", host.endpoint.rpartition(":")[2])
    (host.store.scripts_dir / f"{case.name}.py").write_text(source)
    before = len(host.runs())
    rss_before = host.rss_mb()
    problems: list[str] = []
    response = None
    with host.client() as client:
        started = time.monotonic()
        try:
            response = client.call(case.task, request(f"{case.name}.py"), timeout_s=case.expected_s + settle_s)
        except TimeoutError:
            problems.append(f"no response within {case.expected_s + settle_s:.0f} s")
        elapsed = time.monotonic() - started
        try:
            after = client.call("hostile.quick", request("good.py"), timeout_s=settle_s + QUICK_TIMEOUT_S)
            next_ok = after.success and after.data == {"n": 1}
        except TimeoutError:
            next_ok = False
    if response is not None:
        problems += judge(case, response)
    if not next_ok:
        problems.append("the next request did not succeed")
    pids = [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []
    if not pids:
        problems.append("the script never ran (no pid recorded)")
    wait_until(lambda: all(gone(p) for p in pids) and len(host.runs()) <= before, settle_s)
    leftover = [p for p in pids if not gone(p)]
    for pid in leftover:  # clean up what the host failed to; the result still says so
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    now = len(host.runs())
    if leftover:
        problems.append(f"{len(leftover)} process(es) of the script still alive: {leftover[:5]}")
    if now > before:
        problems.append(f"the host has {now} processes besides the zygote and its waiting children, {before} before")
    if not host.alive():
        problems.append("the host died")
    elif (growth := host.rss_mb() - rss_before) > MAX_HOST_GROWTH_MB:
        problems.append(f"the host's RSS grew {growth:.0f} MB")
    return CaseResult(case, response, elapsed, next_ok, leftover, before, now, problems)


def judge(case: Case, response: CommandMessage) -> list[str]:
    """What is wrong with ``response`` for ``case`` (empty: nothing)."""
    status = "SUCCESS" if response.success else response.data.get("status")
    problems = []
    if status not in case.statuses:
        problems.append(f"status {status}, expected {' or '.join(case.statuses)}: {response.error_message[:300]}")
    if not response.success:
        message = response.error_message
        if len(message) > MAX_ERROR_CHARS:
            problems.append(f"the error message is {len(message)} characters long")
        if case.words and not any(w.lower() in message.lower() for w in case.words):
            problems.append(f"the error message names none of {case.words}: {message[:300]!r}")
    return problems


# -- load -----------------------------------------------------------------------


@dataclass
class LoadResult:
    requests_sent: int = 0
    responses_received: int = 0
    duplicates: int = 0
    lost: int = 0
    busy: int = 0
    other_errors: int = 0
    wrong_data: int = 0


def load(
    endpoint: str, *, clients: int, requests: int, window: int | None = None, within: float = 120.0
) -> LoadResult:
    """``clients`` raw DEALER sockets each send their share of ``requests``
    ``load.echo`` requests as fast as ZeroMQ takes them (or with at most
    ``window`` unanswered each), reading answers as they come; every
    response is counted by transaction id."""
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]
    results = [LoadResult() for _ in range(clients)]
    threads = [
        threading.Thread(target=_load_client, args=(endpoint, i, n, window, results[i], within), daemon=True)
        for i, n in enumerate(per_client)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(within + 30)
    total = LoadResult()
    for r in results:
        for name in total.__dataclass_fields__:
            setattr(total, name, getattr(total, name) + getattr(r, name))
    return total


def _load_client(endpoint: str, index: int, count: int, window: int | None, out: LoadResult, within: float) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)  # never drop an answer on our side
    sock.connect(endpoint)
    seen: dict[int, int] = {}
    deadline = time.monotonic() + within
    try:
        tid = 1
        while len(seen) < count and time.monotonic() < deadline:
            while tid <= count and (window is None or tid - 1 - len(seen) < window):
                frame = encode(new_request(tid, "load.echo", {"client": index, "tid": tid}))
                try:
                    sock.send(frame, zmq.DONTWAIT)
                except zmq.Again:
                    break  # our send queue is full: read some answers first
                out.requests_sent += 1
                tid += 1
            if sock.poll(100):
                for _ in range(1000):
                    try:
                        message = decode(sock.recv(zmq.DONTWAIT))
                    except zmq.Again:
                        break
                    _count(message, index, seen, out)
    finally:
        sock.close(linger=0)
    out.lost = sum(1 for t in range(1, out.requests_sent + 1) if t not in seen)


def _count(message: CommandMessage, index: int, seen: dict[int, int], out: LoadResult) -> None:
    if message.message_type is not MessageType.RESPONSE:
        return
    tid = message.transaction_id
    seen[tid] = seen.get(tid, 0) + 1
    if seen[tid] > 1:
        out.duplicates += 1
        return
    out.responses_received += 1
    if message.success:
        if message.data != {"client": index, "tid": tid}:
            out.wrong_data += 1
    elif message.data.get("status") == "BUSY":
        out.busy += 1
    else:
        out.other_errors += 1


# -- malformed frames -----------------------------------------------------------


def random_bad_message(rng: random.Random, max_frame_bytes: int) -> list[bytes]:
    """One malformed message (a list of frames), of the kinds the protocol
    doc lists: random bytes, truncated JSON, wrong types, huge numbers,
    unknown message types and topics, extra frames, oversized frames."""
    good = {"transaction_id": rng.randrange(1, 2**32), "timecode": 0, "topic": "load.echo",
            "message_type": "request", "data": {}}
    kind = rng.randrange(8)
    if kind == 0:
        return [rng.randbytes(rng.randrange(0, 200))]
    if kind == 1:
        text = msgspec.json.encode(good)
        return [text[: rng.randrange(0, len(text))]]
    if kind == 2:
        key = rng.choice(list(good))
        return [msgspec.json.encode({**good, key: rng.choice([None, "x", 1.5, [], {}, True, -1])})]
    if kind == 3:
        return [b'{"transaction_id": ' + b"9" * rng.randrange(10, 400) + b', "timecode": 1e999}']
    if kind == 4:
        return [msgspec.json.encode({**good, "message_type": rng.choice(["nope", "RESPONSE", "broadcast"])})]
    if kind == 5:
        return [msgspec.json.encode({**good, "topic": rng.choice(["no.such", "", "x" * 300, "host.*"])})]
    if kind == 6:
        return [msgspec.json.encode(good)] * rng.randrange(2, 5)
    return [b'{"transaction_id": 5, "data": "' + b"x" * (max_frame_bytes + 10) + b'"}']


def blast(endpoint: str, messages, *, window: int = 200, within: float = 300.0, **client_kwargs: Any) -> tuple[int, int]:
    """Send every message (a list of frames) from one DEALER, at most
    ``window`` unanswered at a time; returns ``(sent, answers)``. Each answer
    is decoded as a valid ``CommandMessage`` (``decode`` raises otherwise)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sent = answers = 0
    deadline = time.monotonic() + within
    try:
        for frames in messages:
            sock.send_multipart(frames)
            sent += 1
            while sent - answers >= window:
                assert time.monotonic() < deadline, f"{sent - answers} frames unanswered after {within} s"
                if sock.poll(1000):
                    decode(sock.recv_multipart()[-1])
                    answers += 1
        while answers < sent:
            assert time.monotonic() < deadline, f"{sent - answers} of {sent} frames unanswered after {within} s"
            if sock.poll(1000):
                decode(sock.recv_multipart()[-1])
                answers += 1
    finally:
        sock.close(linger=0)
    return sent, answers


def wait_response(client: Client, tid: int, within: float) -> CommandMessage | None:
    """The response to ``tid`` once it has come, or None after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (response := client.take_response(tid)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        client.poll(min(remaining, 0.5))
    return response
