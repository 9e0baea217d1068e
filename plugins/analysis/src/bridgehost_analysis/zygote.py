"""The zygote: forks single-use analysis processes ahead of demand.

Started by the task's runner (``bridgehost_analysis.runner``) as
``python -P -m bridgehost_analysis.zygote <control-fd> <limits-json>`` in
its own session. It imports the runtime and the ``preload`` modules (numpy)
once, then forks one child per run before the run is asked for, so a
request waits for neither a fork nor an import. Each child runs one script
and exits (``bridgehost_analysis.child``); the next run is a new fork of
the same clean zygote, which never runs a script itself.

The zygote owns every process of every run:

- It is single-threaded (checked after the preload): ``fork`` copies only
  the calling thread, so a lock held by another thread would stay locked
  forever in the child (see the NOTES of fork(2)).
- Each child is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``, prctl(2)):
  a process the script starts and orphans, also after ``setsid`` and a
  double fork, is re-parented to the child instead of to init, so the run's
  processes always form one tree under the child. The zygote is a
  subreaper too: when a child ends, what is left of its tree comes to the
  zygote, which kills it before saying the child ``Exited``.
- Killing a tree is freeze-then-kill: SIGSTOP each process, then look for
  its children, until a pass finds no new process; then SIGKILL them all. A
  stopped process cannot fork, so a fork bomb cannot outrun the walk.
- While runs are going, the zygote counts each run's processes every
  ``WATCH_S`` and kills a run with more than ``max_processes``: a bound on
  fork bombs that holds for root too, which RLIMIT_NPROC does not.

The process helpers (prctl, names, trees) are in ``bridgehost_analysis.proc``.
Linux only.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
import time

import msgspec

from bridgehost_analysis import child
from bridgehost_analysis.proc import (
    PR_SET_CHILD_SUBREAPER,
    ZYGOTE_NAME,
    children_of,
    count_tree,
    malloc_trim,
    prctl,
    set_name,
    stop_and_kill,
)
from bridgehost_analysis.protocol import Exited, Failed, Fork, Kill, Limits, Ping, Pong, Ready, RunEnd, SpecTaken, ToZygote
from bridgehost_analysis.sandbox import Confinement

WATCH_S = 0.02
"""How often the processes of running children are counted."""
_decode_command = msgspec.json.Decoder(ToZygote).decode
_encode = msgspec.json.Encoder().encode


class ZygoteProcess:
    """The zygote's state and loop; see the module doc."""

    def __init__(self, control: socket.socket, limits: Limits):
        self.control = control
        self.limits = limits
        self.confinement = Confinement(limits.sandbox, limits.network, limits.sandbox_read, limits.sandbox_write)
        self.confinement.open()  # once: each child inherits the descriptors and only adds rules
        self.pid = os.getpid()
        self.idle: set[int] = set()
        self.running: dict[int, RunEnd | None] = {}  # pid -> why the zygote killed it, if it did
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)  # SIGCHLD wakes the poll below
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, _exit_on_signal)

    def serve(self) -> None:
        """Answer the host until it closes the control socket, then kill
        every child and its processes."""
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        watched = time.monotonic()
        try:
            while True:
                events = poller.poll(WATCH_S * 1000 if self.running else None)
                for fd, _ in events:
                    if fd == self.wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 4096)
                    elif not self._command():
                        return
                self._reap()
                # Every WATCH_S, not on every command: at a hundred runs a
                # second, counting each tree per wake-up cost more than the fork.
                if self.running and (now := time.monotonic()) - watched >= WATCH_S:
                    watched = now
                    self._watch()
        finally:
            self._shutdown()

    def _command(self) -> bool:
        """Handle one command; ``False`` once the host has gone."""
        try:
            data = self.control.recv(4096)
        except ConnectionResetError:
            return False
        if not data:
            return False
        command = _decode_command(data)
        if isinstance(command, Fork):
            for _ in range(command.count):
                self._fork()
        elif isinstance(command, SpecTaken):
            if command.pid in self.idle:
                self.idle.discard(command.pid)
                self.running[command.pid] = None
            if command.replace:
                self._fork()
        elif isinstance(command, Kill):
            if command.pid in self.running or command.pid in self.idle:
                self.running[command.pid] = self.running.get(command.pid) or RunEnd.KILLED
                stop_and_kill([command.pid])
        elif isinstance(command, Ping):
            self._send(Pong(command.seq))
        return True

    def _fork(self) -> None:
        reply_host, reply_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        exit_now = os._exit  # not the module attribute a script may replace
        pid = os.fork()
        if pid == 0:  # the child: drop everything of the zygote's, then run one analysis
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self.control.close()
                reply_host.close()
                for fd in (self.wake_r, self.wake_w, out_r):
                    os.close(fd)
                child.main(reply_child, out_w, self.limits, self.pid, self.confinement)
            finally:
                exit_now(70)
        reply_child.close()
        os.close(out_w)
        self.idle.add(pid)
        try:
            socket.send_fds(self.control, [_encode(Ready(pid))], [reply_host.fileno(), out_r])
        except OSError:
            pass  # the host is gone: the next poll sees the end of the control socket
        finally:  # the host has its own copies now
            reply_host.close()
            os.close(out_r)

    def _reap(self) -> None:
        """Reap every child that ended; for one of ours, first kill what is
        left of its tree (re-parented to the zygote), then tell the host."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            ours = pid in self.running or pid in self.idle
            if ours:
                # Still a zombie here, so its pid (and process group id) cannot be reused yet.
                self._sweep()
            _, status, usage = os.wait4(pid, 0)
            if ours:
                self.idle.discard(pid)
                killed_for = self.running.pop(pid, None)
                self._send(Exited(pid, os.waitstatus_to_exitcode(status), killed_for, usage.ru_maxrss))

    def _sweep(self) -> None:
        """Kill and reap every child of the zygote that it did not fork:
        the leftovers of runs that ended."""
        while strays := [p for p in children_of(self.pid) if p not in self.running and p not in self.idle]:
            stop_and_kill(strays)
            for pid in strays:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)

    def _watch(self) -> None:
        for pid, killed_for in list(self.running.items()):
            if killed_for is None and count_tree(pid) > self.limits.max_processes:
                self.running[pid] = RunEnd.TOO_MANY_PROCESSES
                stop_and_kill([pid])

    def _send(self, message: msgspec.Struct) -> None:
        with contextlib.suppress(OSError):  # the host is gone: _command will see it
            self.control.send(_encode(message))

    def _shutdown(self) -> None:
        stop_and_kill([*self.idle, *self.running])
        for pid in [*self.idle, *self.running]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.idle.clear()
        self.running.clear()
        self._sweep()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[1]))
    limits = msgspec.json.decode(argv[2], type=Limits)
    try:
        for name in limits.preload:
            importlib.import_module(name)
    except BaseException as e:
        return _fail(control, f"preload: importing {name!r} failed: {type(e).__name__}: {e}")
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return _fail(
            control,
            f"preload: the zygote has {threads} threads after importing {', '.join(limits.preload)}; "
            "forking a process with threads is unsafe: remove the module that starts them from preload",
        )
    # Objects the preload made go to the collector's permanent generation: a
    # child's collections then leave them alone instead of writing to (and so
    # copying) every page of the shared heap (the gc.freeze docs).
    set_name(ZYGOTE_NAME)
    gc.disable()  # nor does the zygote's own collector touch them; each child enables it
    gc.collect()
    gc.freeze()
    # Give the heap's free pages back: a fork copies the page tables of every
    # resident page (with numpy 19 -> 16 MB, fork 0.9 -> 0.7 ms here). glibc only.
    malloc_trim()
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError as e:
        return _fail(control, f"prctl(PR_SET_CHILD_SUBREAPER) failed ({e.strerror}): the zygote needs Linux 3.4 or later")
    ZygoteProcess(control, limits).serve()
    return 0


def _fail(control: socket.socket, message: str) -> int:
    with contextlib.suppress(OSError):
        # Read what the host sent first: closing a socket with unread data
        # resets the connection, and the host could lose the message below.
        control.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while control.recv(4096):
                pass
        control.send(_encode(Failed(message)))
    print(f"bridgehost-analysis zygote: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
