"""Run one analysis in a fresh child process and collect what it left.

The child (``bridgehost_analysis.child``) runs in its own session, so its
process group holds it and everything the script starts. Whatever happens,
success, a crash, an oversized reply or the cancellation of ``run_child`` by
the host's timeout or shutdown, that whole group is SIGKILLed and the child
reaped before ``run_child`` returns or re-raises: nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass

import msgspec

from bridgehost_analysis.protocol import ChildSpec

# Numeric libraries start a thread pool per core at import, each reserving
# address space; under RLIMIT_AS that can fail numpy's import. One thread
# each, unless the deployment's environment says otherwise.
CHILD_ENV_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
REPLY_OVERHEAD = 1 << 20
"""Allowed above ``max_result_bytes`` on the reply channel: the envelope, or
an error reply with a long traceback."""
_REAP_S = 5.0
_DRAIN_S = 1.0
_POLL_S = 0.005


@dataclass(frozen=True)
class Finished:
    """What a child left: its reply bytes (``None`` if it wrote none, or too
    many: ``overflow``), its return code (negative: killed by that signal)
    and the tail of its stdout/stderr."""

    reply: bytes | None
    returncode: int
    output: str
    overflow: bool = False


async def run_child(spec: ChildSpec, *, max_output_bytes: int) -> Finished:
    """Run ``spec`` in a new ``python -m bridgehost_analysis.child`` and wait
    for it to end.

    The reply channel is read up to ``spec.max_result_bytes`` plus
    ``REPLY_OVERHEAD`` bytes; beyond that the child is killed and
    ``overflow`` set. At most the last ``max_output_bytes`` bytes of its
    combined stdout and stderr are kept. Cancellation kills the process
    group, reaps the child and propagates.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",  # do not put the host's working directory on the child's sys.path
        "-m",
        "bridgehost_analysis.child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env={**CHILD_ENV_DEFAULTS, **os.environ},
    )
    pgid = proc.pid  # start_new_session: the child leads its own group
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    tail = _Tail(max_output_bytes)
    drain = asyncio.create_task(tail.read_all(proc.stderr))
    reply: bytes | None = None
    overflow = False
    try:
        await _feed(proc.stdin, msgspec.json.encode(spec))
        reply, overflow = await _read_capped(proc.stdout, spec.max_result_bytes + REPLY_OVERHEAD)
        if not overflow:
            await _exited(proc)  # the reply channel closed: the child is exiting
    finally:
        # Also on success: anything the script started and left behind dies with it.
        kill_group(pgid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_exited(proc), _REAP_S)
        await _finish(drain)
    assert proc.returncode is not None
    return Finished(reply, proc.returncode, tail.text(), overflow)


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` (one this module created); a group
    that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child died at once; its return code tells why


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes | None, bool]:
    """Everything up to EOF, or ``(None, True)`` once more than ``cap`` bytes came."""
    data = bytearray()
    while chunk := await stream.read(1 << 16):
        data += chunk
        if len(data) > cap:
            return None, True
    return (bytes(data) or None), False


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait until the child has exited and been reaped.

    Not ``proc.wait()``: in current CPython (3.11.7 here) it also waits for the child's
    pipes to close, which a process the script started may hold open.
    ``returncode`` is set as soon as asyncio's child watcher reaps the child.
    """
    while proc.returncode is None:
        await asyncio.sleep(_POLL_S)


async def _finish(drain: asyncio.Task[None]) -> None:
    """Let the output reader reach EOF (the group is dead, so it is close);
    a pipe held open by a process that escaped the group is given up on."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(drain), _DRAIN_S)
    drain.cancel()


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    async def read_all(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(1 << 16):
            self.data += chunk
            if len(self.data) > 2 * self.limit:  # trim in batches, not per chunk
                self._trim()
        self._trim()

    def _trim(self) -> None:
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        self._trim()
        text = self.data.decode("utf-8", "replace")
        return f"[... {self.dropped} earlier bytes not kept]\n{text}" if self.dropped else text
