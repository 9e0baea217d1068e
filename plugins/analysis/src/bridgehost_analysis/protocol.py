"""What the task, the zygote and a run's child process say to each other.

Three channels, all created by the zygote (``bridgehost_analysis.zygote``)
for each child it forks:

- **control** (one per zygote, ``AF_UNIX``/``SOCK_SEQPACKET``, one message
  per packet): the host sends ``Fork``, ``Started`` and ``Kill``; the zygote
  answers ``Failed`` or ``Ready`` (with the host's ends of the next two channels attached as
  ``SCM_RIGHTS`` file descriptors, see unix(7)) and ``Exited``.
- **reply** (one per run, ``AF_UNIX``/``SOCK_STREAM``): the host writes one
  ``ChildSpec`` (JSON) and shuts down its writing side; the child answers
  with one ``Reply`` (JSON) after its length (``REPLY_HEADER`` bytes, big
  endian), so the host knows the reply is whole without waiting for the
  child's exit, and exits.
- **output** (one per run, a pipe): the child's file descriptors 1 and 2,
  so prints of the script and of every process it starts are captured and
  never mix with the reply.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

REPLY_HEADER = 8
RawData = Literal["lists", "arrays", "mmap"]
ReplyKind = Literal["", "io", "invalid", "raised", "exit", "bad_result"]


class ChildSpec(msgspec.Struct, kw_only=True):
    """One analysis to run. Paths are absolute; ``script`` is the name the
    request used, for messages."""

    root: str
    script: str
    script_path: str
    function: str
    project_id: str
    definition_id: str
    run_id: str
    custom_params: dict[str, Any] = {}
    raw_data: RawData = "lists"
    max_result_bytes: int = 64 << 20
    target: str | None = None
    """``"module:qualname"`` of a registered analysis (``register_analyses``):
    the child imports and calls it instead of loading ``script_path``;
    ``script`` then holds the analysis name, for messages."""


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The child's answer.

    ``ok``: ``result`` is the function's dict, already encoded. Otherwise
    ``kind`` says what went wrong: ``io`` (the run could not be read),
    ``invalid`` (no such function), ``raised`` (the script raised),
    ``exit`` (it called ``sys.exit``; ``exit_code``), ``bad_result`` (the
    return value is not a JSON dict or is too large). ``message`` describes
    it; ``traceback`` is the script's, runner frames left out.
    """

    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")  # msgspec decodes no Raw | None union
    kind: ReplyKind = ""
    message: str = ""
    traceback: str = ""
    exit_code: int | None = None
    out_of_memory: bool = False
    """The script raised a MemoryError (or a subclass, like numpy's)."""


class Limits(msgspec.Struct, kw_only=True):
    """What the zygote applies to every child it forks (the task's config).

    ``memory_limit_mb``: RLIMIT_AS in MiB; ``cpu_limit_s``: RLIMIT_CPU in
    CPU seconds (rounded up); ``nproc_limit``: RLIMIT_NPROC (counts every
    process of the user, see docs/analysis.md); ``None``: not set.
    ``max_processes``: the most processes one run may have alive at once,
    itself included, counted by the zygote. ``preload``: modules the zygote
    imports before forking.
    """

    memory_limit_mb: int | None = None
    cpu_limit_s: float | None = None
    nproc_limit: int | None = None
    max_processes: int = 64
    preload: list[str] = []


# -- control messages -------------------------------------------------------


class Fork(msgspec.Struct, tag="fork"):
    """host -> zygote: fork ``count`` more children to wait for a spec."""

    count: int = 1


class Started(msgspec.Struct, tag="started"):
    """host -> zygote: child ``pid`` got its spec (its processes are counted
    from now on); fork another child to take its place if ``replace``."""

    pid: int
    replace: bool = True


class Kill(msgspec.Struct, tag="kill"):
    """host -> zygote: kill child ``pid`` and every process it started."""

    pid: int


class Ready(msgspec.Struct, tag="ready"):
    """zygote -> host: child ``pid`` waits for its spec. Two file
    descriptors come with it: the reply socket and the output pipe's
    reading end."""

    pid: int


ExitReason = Literal["", "processes", "killed", "zygote"]


class Exited(msgspec.Struct, tag="exited"):
    """zygote -> host: child ``pid`` ended and was reaped, and every process
    it started is dead. ``returncode`` as in ``subprocess`` (negative: the
    signal that ended it). ``reason``: ``processes`` (it had more than
    ``max_processes`` alive), ``killed`` (the host asked), ``zygote`` (the
    zygote is gone, ``returncode`` unknown), or empty (it ended itself)."""

    pid: int
    returncode: int
    reason: ExitReason = ""


class Failed(msgspec.Struct, tag="failed"):
    """zygote -> host, instead of any ``Ready``: the zygote cannot work
    (``message`` says why, e.g. a ``preload`` module failed to import) and
    exits."""

    message: str


ToZygote = Fork | Started | Kill
FromZygote = Ready | Exited | Failed
