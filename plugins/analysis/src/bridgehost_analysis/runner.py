"""Run one analysis in a fresh, single-use process and collect what it left.

Two runners, one mechanism (``docs/performance.md`` compares them):

- ``ZygoteRunner`` keeps one zygote process per task
  (``bridgehost_analysis.zygote``) with the runtime and numpy imported; it
  forks children ahead of demand, so a run costs about a function call.
- ``SubprocessRunner`` starts a new interpreter (a zygote that preloads
  nothing and forks once) for every run: the obvious way, tens of
  milliseconds more.

Either way the run's child is a fresh process that runs one script and
exits, with the task's resource limits. Whatever happens (success, a crash,
an oversized reply or output, the cancellation of ``run`` by the host's
timeout or shutdown), every process of the run is killed and reaped before
``run`` returns or re-raises.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from bridgehost_analysis.proc import kill_group, stop_and_kill
from bridgehost_analysis.protocol import (
    REPLY_HEADER,
    ChildSpec,
    Exited,
    Failed,
    Fork,
    FromZygote,
    Kill,
    Limits,
    Ping,
    Pong,
    Ready,
    RunEnd,
    SpecTaken,
)

# Numeric libraries start a thread pool per core at import, each reserving
# address space; under RLIMIT_AS that can fail numpy's import, and a zygote
# must have no threads. One thread each, unless the deployment's
# environment says otherwise.
CHILD_ENV_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
REPLY_OVERHEAD = 1 << 20
"""Allowed above ``max_result_bytes`` on the reply channel: the envelope, or
an error reply with a long traceback."""
WATCH_S = 1.0
"""How often the host checks that its zygote is not stopped and pings it (each
zygote costs the host and itself a wake-up then: idle CPU)."""
ANSWER_S = 5.0
"""How long the zygote may take to answer a ping before it is given up as hung:
long enough for it to kill a fork bomb of hundreds of processes on a loaded machine."""
START_S = 120.0
"""How long a zygote may take to import its preload and fork a child."""
MAX_EARLY_DEATHS = 20
"""Waiting children that may die before their run, since the last reply,
before the zygote is given up as broken (and started again on the next
request)."""
_REAP_S = 5.0
_DRAIN_S = 1.0
_decode = msgspec.json.Decoder(FromZygote).decode
_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)


class ZygoteFailed(RuntimeError):
    """The zygote could not start or died; the message says why."""


@dataclass(frozen=True)
class RunLeftovers:
    """What a run's child left: its reply bytes (``None`` if it wrote none,
    or too many), its return code (negative: killed by that signal; 0 when
    the reply came whole, as its exit is not waited for), the tail of its
    stdout/stderr, and ``killed_for`` if bridgehost killed it:
    ``REPLY_TOO_LARGE`` (over ``max_result_bytes``), ``TOO_MUCH_OUTPUT``
    (over ``output_kill_bytes``), ``TOO_MANY_PROCESSES`` (over
    ``max_processes``), ``KILLED`` (the host asked), ``ZYGOTE_LOST`` (the
    zygote died)."""

    reply: bytes | None
    returncode: int
    output: str
    killed_for: RunEnd | None = None


@dataclass
class _Child:
    pid: int
    reply: socket.socket
    output_fd: int

    def close(self) -> None:
        self.reply.close()
        if self.output_fd >= 0:
            os.close(self.output_fd)
            self.output_fd = -1


class ZygoteHandle:
    """The host's side of one zygote process (``ZygoteProcess``): its control socket, the
    children waiting for a spec, the runs going on.

    ``prefork`` children wait ahead of demand; each ``run`` takes one and,
    unless ``single_use``, has the zygote fork its replacement.
    """

    def __init__(self, limits: Limits, *, prefork: int, single_use: bool = False):
        self.limits = limits
        self.prefork = prefork
        self.single_use = single_use
        self.alive = False
        self.proc: asyncio.subprocess.Process | None = None
        self.control: socket.socket | None = None
        self.ready: collections.deque[_Child] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[_Child]] = collections.deque()
        self.running: dict[int, asyncio.Future[Exited]] = {}
        self._started: asyncio.Future[None] | None = None
        self._ending: set[asyncio.Future[None]] = set()
        self._early_deaths = 0  # waiting children that died since the last reply
        self.max_rss_kb = 0
        """The largest peak resident memory of a child that ran, KiB (for the metrics)."""
        self.scratch_root: str | None = None
        self._watch: asyncio.Task[None] | None = None
        self._pong = 0  # the last Ping the zygote answered

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        """Start the zygote and wait for its first child. Raises
        ``ZygoteFailed`` (after cleaning up) if it cannot start."""
        loop = asyncio.get_running_loop()
        # Each child makes its scratch folder (TMPDIR) in here; the host removes it after the child's end.
        self.scratch_root = tempfile.mkdtemp(prefix="bridgehost-scratch-")
        limits = msgspec.structs.replace(self.limits, scratch_root=self.scratch_root)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # do not put the host's working directory on sys.path
                "-m",
                "bridgehost_analysis.zygote",
                str(theirs.fileno()),
                _encode(limits).decode(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,  # stderr: the host's, for the zygote's own failures
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env={**CHILD_ENV_DEFAULTS, **os.environ},
                cwd="/",  # each child changes into its run's folder
            )
        except BaseException:
            ours.close()
            _remove(self.scratch_root)
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.control = ours
        self.alive = True
        self._started = loop.create_future()
        loop.add_reader(ours, self._on_control)
        self._send(Fork(self.prefork))
        try:
            await asyncio.wait_for(asyncio.shield(self._started), START_S)
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.create_task(self._watch_zygote(), name=f"watch analysis zygote {self.pid}")

    async def _watch_zygote(self) -> None:
        """Every ``WATCH_S``: is the zygote stopped (``/proc/<pid>/stat``,
        proc(5)), and did it answer the last ``Ping`` within ``ANSWER_S``?
        If not, kill it with every process it has and fail what waits on
        it (``_lost``): the runs in progress end CRASH, the next request
        starts a new zygote. A zygote that died is seen by ``_on_control``."""
        seq = 0
        sent_at = time.monotonic()
        while self.alive:
            await asyncio.sleep(WATCH_S)
            if not self.alive or self.proc is None:
                return
            state = _state(self.proc.pid)
            now = time.monotonic()
            if state in ("T", "t"):
                why = f"the zygote (pid {self.proc.pid}) was stopped (SIGSTOP from outside?)"
            elif self._pong < seq and now - sent_at > ANSWER_S:
                why = f"the zygote (pid {self.proc.pid}) stopped answering (no answer in {ANSWER_S:.0f} s; state {state})"
            else:
                if self._pong == seq:
                    seq += 1
                    sent_at = now
                    self._send(Ping(seq))
                continue
            stop_and_kill([self.proc.pid])  # the zygote and all its processes, stopped first: nothing forks away
            self._lost(why)
            return

    async def run(self, spec: ChildSpec, *, output_kept_bytes: int, output_kill_bytes: int) -> RunLeftovers:
        """Run ``spec`` in the next waiting child and wait for its reply, or
        for its end if it sends none.

        The reply channel is read up to ``spec.max_result_bytes`` plus
        ``REPLY_OVERHEAD`` bytes, the output up to ``output_kill_bytes``;
        beyond either the child is killed. At most the last
        ``output_kept_bytes`` of the output are kept. Raises ``ZygoteFailed``
        if the zygote is gone. Cancellation kills the run's processes,
        waits for the zygote to reap them, and propagates.

        After a whole reply, the child has nothing left to do but exit; its
        exit (about a millisecond: the kernel unmaps the copy of the
        zygote) and the killing of anything it left running happen after
        ``run`` returns, and ``stop()`` waits for them.
        """
        loop = asyncio.get_running_loop()
        child = await self._take()
        exited = self.running[child.pid]

        def kill() -> None:
            if not exited.done():
                self._send(Kill(child.pid))

        output = _Output(output_kept_bytes, output_kill_bytes, kill)
        channel = _ChildChannel(msgspec.json.encode(spec), spec.max_result_bytes + REPLY_OVERHEAD, kill)
        pipe = os.fdopen(child.output_fd, "rb", buffering=0)  # owns the fd from here on
        child.output_fd = -1
        channels: list[asyncio.BaseTransport | io.RawIOBase | socket.socket] = [pipe, child.reply]
        leftovers: RunLeftovers | None = None
        try:
            channels.append((await loop.connect_read_pipe(lambda: output, pipe))[0])
            channels.append((await loop.connect_accepted_socket(lambda: channel, child.reply))[0])
            self._send(SpecTaken(child.pid, replace=not self.single_use))  # after the spec: its fork can wait
            await asyncio.wait([channel.whole, exited], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]  # two Future types
            if channel.whole.done():
                self._early_deaths = 0
                output.drain(pipe)  # the child wrote its output before its reply
                leftovers = RunLeftovers(channel.body(), 0, output.text())
            else:
                ended = exited.result()
                # Every process that held the channels is dead: their ends come at once.
                await asyncio.wait([output.done, channel.done], timeout=_DRAIN_S)
                killed_for = (
                    RunEnd.REPLY_TOO_LARGE if channel.overflow
                    else RunEnd.TOO_MUCH_OUTPUT if output.limited
                    else ended.killed_for
                )
                leftovers = RunLeftovers(channel.body(), ended.returncode, output.text(), killed_for)
            return leftovers
        finally:
            cleanup = self._end(child.pid, exited, channels, wait_s=_REAP_S if leftovers else 0.0)
            if leftovers is None:  # failed or cancelled: the run's processes die before we go on
                await cleanup
            else:
                self._background(cleanup)

    async def _end(
        self, pid: int, exited: asyncio.Future[Exited], channels: list[Any], *, wait_s: float
    ) -> None:
        """Let child ``pid`` exit by itself for ``wait_s``, then have it killed;
        wait until the zygote has reaped it and all its processes; close its
        channels."""
        try:
            if not exited.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), wait_s)
            if not exited.done():
                self._send(Kill(pid))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), _REAP_S)
        finally:
            for channel in channels:
                channel.close()  # closing twice is a no-op for transports, files and sockets

    async def stop(self) -> None:
        """Close the control socket (the zygote then kills every child and
        exits) and reap the zygote; SIGKILL its group if it does not go."""
        if self._ending:  # children that replied and are exiting
            await asyncio.wait(list(self._ending), timeout=2 * _REAP_S)
        self._lost("the analysis runner stopped")
        if self.proc is None:
            return
        try:
            await asyncio.wait_for(self.proc.wait(), _REAP_S)
        except TimeoutError:
            kill_group(self.proc.pid)
            await self.proc.wait()
        if self._ending:
            await asyncio.wait(list(self._ending), timeout=2 * _REAP_S)
        if self.scratch_root:
            await asyncio.to_thread(_remove, self.scratch_root)

    async def _take(self) -> _Child:
        if not self.alive:
            raise ZygoteFailed("the zygote is not running")
        if self.ready:
            child = self.ready.popleft()
        else:
            waiter: asyncio.Future[_Child] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                child = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self.ready.appendleft(waiter.result())  # it came just as we were cancelled
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
        self.running[child.pid] = asyncio.get_running_loop().create_future()
        return child

    def _on_control(self) -> None:
        assert self.control is not None
        while self.control is not None:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, 1 << 16, 2)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                data, fds = b"", []
                log.warning("zygote %s: control socket failed: %s", self.pid, e)
            if not data:
                self._lost(f"the zygote (pid {self.pid}) exited; see the host's stderr for why")
                return
            for fd in fds:  # a process the host starts must not hold a child's channels
                os.set_inheritable(fd, False)  # (recv_fds drops MSG_CMSG_CLOEXEC in CPython 3.11)
            message = _decode(data)
            if isinstance(message, Ready) and len(fds) == 2:
                self._ready(_Child(message.pid, socket.socket(fileno=fds[0]), fds[1]))
                continue
            for fd in fds:
                os.close(fd)
            if isinstance(message, Pong):
                self._pong = max(self._pong, message.seq)
            elif isinstance(message, Exited):
                self._exited(message)
            elif isinstance(message, Failed):
                self._lost(message.message)

    def _ready(self, child: _Child) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_result(None)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(child)
                return
        self.ready.append(child)

    def _exited(self, message: Exited) -> None:
        if self.scratch_root:  # every process of the run is dead: its scratch folder goes
            scratch = os.path.join(self.scratch_root, str(message.pid))
            try:
                os.rmdir(scratch)  # most runs leave it empty: no thread needed
            except FileNotFoundError:
                pass
            except OSError:
                self._background(asyncio.to_thread(_remove, scratch))
        future = self.running.pop(message.pid, None)
        if future is not None:
            self.max_rss_kb = max(self.max_rss_kb, message.max_rss_kb)
            if not future.done():
                future.set_result(message)
            return
        for child in self.ready:  # a waiting child died (killed from outside?)
            if child.pid == message.pid:
                self.ready.remove(child)
                child.close()
                self._early_deaths += 1
                if self._early_deaths > MAX_EARLY_DEATHS:  # not from outside: do not fork in a loop
                    self._lost(
                        f"{self._early_deaths} children died before their run (the last with code "
                        f"{message.returncode}); see the host's stderr"
                    )
                elif not self.single_use:
                    log.warning("analysis child %s died before its run (code %s)", message.pid, message.returncode)
                    self._send(Fork(1))
                return

    def _background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    def _lost(self, why: str) -> None:
        """The zygote is gone (or being stopped): fail everything waiting on it."""
        was_alive, self.alive = self.alive, False
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        if self.control is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.control)
            self.control.close()
            self.control = None
        if was_alive and why != "the analysis runner stopped":
            log.error("analysis zygote: %s", why)
        error = ZygoteFailed(why)
        if self._started is not None and not self._started.done():
            self._started.set_exception(error)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        while self.ready:
            self.ready.popleft().close()
        for pid, future in self.running.items():
            kill_group(pid)  # its PDEATHSIG killed the child; this catches what stayed in its group
            if not future.done():
                future.set_result(Exited(pid, -signal.SIGKILL, RunEnd.ZYGOTE_LOST))
        self.running.clear()

    def _send(self, message: msgspec.Struct) -> None:
        if self.control is not None:
            with contextlib.suppress(OSError):  # gone: _on_control sees the end
                self.control.send(_encode(message))


class ZygoteRunner:
    """One long-lived zygote with ``limits.preload`` imported, started by
    ``start()`` and started again if it dies."""

    def __init__(self, limits: Limits, *, prefork: int):
        self.limits = limits
        self.prefork = prefork
        self.zygote: ZygoteHandle | None = None
        self.restarts = 0
        """Zygotes started again after one died (for the metrics)."""
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self.zygote is not None and self.zygote.alive:
                return
            if self.zygote is not None:
                log.warning("analysis zygote (pid %s) is gone: starting a new one", self.zygote.pid)
                self.restarts += 1
                await self.zygote.stop()
            zygote = ZygoteHandle(self.limits, prefork=self.prefork)
            await zygote.start()
            if self.zygote is not None:
                zygote.max_rss_kb = self.zygote.max_rss_kb
            self.zygote = zygote

    async def run(self, spec: ChildSpec, *, output_kept_bytes: int, output_kill_bytes: int) -> RunLeftovers:
        """``ZygoteHandle.run`` on the zygote, started again first if it is gone.
        If it dies before a child took the spec, the run goes to the next
        zygote; if it dies during the run, ``killed_for`` says so."""
        for attempt in (1, 2):
            await self.start()
            assert self.zygote is not None
            try:
                return await self.zygote.run(
                    spec, output_kept_bytes=output_kept_bytes, output_kill_bytes=output_kill_bytes
                )
            except ZygoteFailed:  # only before a child has the spec: nothing ran
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        if self.zygote is not None:
            await self.zygote.stop()
            self.zygote = None


class SubprocessRunner:
    """A new interpreter for every run: a zygote that imports nothing
    beyond the runtime and forks a single child, then exits."""

    def __init__(self, limits: Limits):
        self.limits = msgspec.structs.replace(limits, preload=[])

    async def start(self) -> None:
        pass

    async def run(self, spec: ChildSpec, *, output_kept_bytes: int, output_kill_bytes: int) -> RunLeftovers:
        zygote = ZygoteHandle(self.limits, prefork=1, single_use=True)
        await zygote.start()
        try:
            return await zygote.run(spec, output_kept_bytes=output_kept_bytes, output_kill_bytes=output_kill_bytes)
        finally:
            await zygote.stop()

    async def stop(self) -> None:
        pass


class Runner(Protocol):
    """What the ``analysis`` task runs a spec with: ``ZygoteRunner``,
    ``SubprocessRunner``, or ``bridgehost_analysis.batch.dask.DaskRunner``
    (a zygote on a Dask worker)."""

    limits: Limits
    """The limits every run gets (``bridgehost check`` reads the sandbox folders)."""

    async def start(self) -> None: ...

    async def run(self, spec: ChildSpec, *, output_kept_bytes: int, output_kill_bytes: int) -> RunLeftovers: ...

    async def stop(self) -> None: ...


def _state(pid: int) -> str:
    """The state letter of ``/proc/<pid>/stat`` (proc(5)): ``R``, ``S``,
    ``T`` (stopped), ``Z``...; ``"gone"`` if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


def _remove(path: str) -> None:
    """Remove a scratch folder and all in it; a missing one is fine."""
    shutil.rmtree(path, ignore_errors=True)


class _ChildChannel(asyncio.Protocol):
    """The reply socket of one child: writes the spec, then reads the
    length-prefixed reply. ``whole``:
    the reply is in; ``done``: the child's end closed. A reply declared or
    sent beyond ``cap`` bytes is dropped and ``on_overflow`` called."""

    def __init__(self, spec: bytes, cap: int, on_overflow: Callable[[], None]):
        self.spec = spec
        self.cap = cap
        self.on_overflow = on_overflow
        self.data = bytearray()
        self.size: int | None = None
        self.overflow = False
        loop = asyncio.get_running_loop()
        self.whole: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.spec)
        transport.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.overflow or self.whole.done():
            return
        self.data += data
        if self.size is None and len(self.data) >= REPLY_HEADER:
            self.size = int.from_bytes(self.data[:REPLY_HEADER], "big")
        if (self.size or 0) > self.cap or len(self.data) > REPLY_HEADER + self.cap:
            self.overflow = True
            self.data = bytearray()
            self.on_overflow()
        elif self.size is not None and len(self.data) >= REPLY_HEADER + self.size:
            self.whole.set_result(None)

    def body(self) -> bytes | None:
        """The reply, if it came whole."""
        return bytes(self.data[REPLY_HEADER:]) if self.whole.done() else None

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Output(asyncio.Protocol):
    """Keeps the last ``keep`` bytes of the child's stdout/stderr; past
    ``limit`` bytes in all it calls ``on_limit`` once."""

    def __init__(self, keep: int, limit: int, on_limit: Callable[[], None]):
        self.keep = keep
        self.limit = limit
        self.on_limit = on_limit
        self.data = bytearray()
        self.total = 0
        self.limited = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.total += len(data)
        self.data += data
        if len(self.data) > 2 * self.keep + (1 << 16):  # trim in batches, not per chunk
            del self.data[: len(self.data) - self.keep]
        if self.total > self.limit and not self.limited:
            self.limited = True
            self.on_limit()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def drain(self, pipe: io.RawIOBase) -> None:
        """Take what is in the pipe now, without waiting for the event loop."""
        with contextlib.suppress(OSError, ValueError):  # empty now; or closed: the transport read it all
            while chunk := pipe.read(1 << 16):
                self.data_received(chunk)

    def text(self) -> str:
        kept = self.data[-self.keep :] if self.keep else bytearray()
        text = kept.decode("utf-8", "replace")
        dropped = self.total - len(kept)
        return f"[... {dropped} earlier bytes not kept]\n{text}" if dropped else text
