"""Linux process helpers of the analysis plugin: prctl(2), process names,
process trees.

Used by the zygote (``bridgehost_analysis.zygote``), the children it forks
(``bridgehost_analysis.child``) and the host's side of both
(``bridgehost_analysis.runner``). Descendants are found through
``/proc/<pid>/task/<tid>/children`` (Linux 3.5+, see proc(5)). Linux only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable

# prctl(2) options, from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

ZYGOTE_NAME = b"bh-zygote"
"""The name of the zygote process (``/proc/<pid>/comm``, what ``ps -e`` shows)."""
WAITING_NAME = b"bh-waiting"
"""The name of a forked child until it gets its spec."""
RUNNING_NAME = b"bh-analysis"
"""The name of a child running its analysis (and of what it forks)."""

libc = ctypes.CDLL(None, use_errno=True)
"""The C library this process runs with (glibc or musl)."""


def prctl(option: int, value: int) -> None:
    """``prctl(option, value, 0, 0, 0)``; raises ``OSError`` with errno if it fails."""
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def set_name(name: bytes) -> None:
    """Name this process (``/proc/<pid>/comm``, at most 15 bytes, what
    ``ps -e`` and ``top`` show), so an operator sees which processes are which."""
    libc.prctl(PR_SET_NAME, name, 0, 0, 0)


def malloc_trim() -> None:
    """Give the heap's free pages back to the kernel (glibc's
    ``malloc_trim(3)``); nothing where the C library has no such call."""
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s children (of all its threads); ``[]`` if it is gone."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(map(int, f.read().split()))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass  # it, or that thread, just ended; or it is not ours to look at
    return found


def count_tree(pid: int) -> int:
    """How many processes the tree under ``pid`` holds, ``pid`` included."""
    count, stack = 0, [pid]
    while stack:
        count += 1
        stack.extend(children_of(stack.pop()))
    return count


def stop_and_kill(roots: Iterable[int]) -> set[int]:
    """SIGKILL ``roots`` and all their descendants, freezing each with
    SIGSTOP before reading its children (a stopped process cannot fork, so
    a fork bomb cannot outrun the walk); returns the pids signalled."""
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # e.g. a setuid program
                os.kill(pid, signal.SIGSTOP)
            pending.extend(children_of(pid))
        # A process may have forked before its SIGSTOP landed, or been
        # re-parented under one already seen: look again until nothing is new.
        pending = [c for pid in seen for c in children_of(pid) if c not in seen]
    for pid in seen:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return seen


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` (one this package created); a
    group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
