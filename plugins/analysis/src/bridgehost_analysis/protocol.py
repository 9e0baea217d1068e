"""What the task, the zygote and a run's child process say to each other.

Three channels, all created by the zygote (``bridgehost_analysis.zygote``)
for each child it forks:

- **control** (one per zygote, ``AF_UNIX``/``SOCK_SEQPACKET``, one message
  per packet): the host sends ``Fork``, ``SpecTaken``, ``Kill`` and
  ``Ping``; the zygote answers ``Pong``, ``Failed`` or ``Ready`` (with the host's ends of the next two channels attached as
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

import enum
from typing import Any, Literal

import msgspec

from bridgehost_analysis.sandbox import Mode

REPLY_HEADER = 8
RawData = Literal["lists", "arrays", "mmap"]


class RunEnd(enum.Enum):
    """How a run ended: one name from the child's ``Reply`` and the
    zygote's ``Exited`` to the task's answer (``AnalysisTask``).

    Said by the child in its ``Reply``:

    - ``RETURNED``: the function returned a JSON dict (the only success);
    - ``IO_FAILED``: the run's data could not be read;
    - ``NO_FUNCTION``: the script defines no such function;
    - ``RAISED``: the script raised;
    - ``EXITED``: the script called ``sys.exit``;
    - ``BAD_RESULT``: the return value is not a JSON dict, or too large;
    - ``SANDBOX_FAILED``: the run's confinement could not be applied (nothing
      of the run was read or run).

    Found by the zygote or the host's runner, when the child sent no reply:

    - ``DIED``: it ended by itself (``os._exit``, a signal not sent by bridgehost);
    - ``KILLED``: the host had it killed (its timeout or shutdown);
    - ``TOO_MANY_PROCESSES``: over ``max_processes`` alive at once, killed;
    - ``TOO_MUCH_OUTPUT``: over ``output_kill_bytes`` of stdout/stderr, killed;
    - ``REPLY_TOO_LARGE``: a reply over ``max_result_bytes``, killed;
    - ``ZYGOTE_LOST``: the zygote died, was stopped or stopped answering
      during the run (the host killed it with all its processes).
    """

    RETURNED = "returned"
    IO_FAILED = "io_failed"
    NO_FUNCTION = "no_function"
    RAISED = "raised"
    EXITED = "exited"
    BAD_RESULT = "bad_result"
    SANDBOX_FAILED = "sandbox_failed"
    DIED = "died"
    KILLED = "killed"
    TOO_MANY_PROCESSES = "too_many_processes"
    TOO_MUCH_OUTPUT = "too_much_output"
    REPLY_TOO_LARGE = "reply_too_large"
    ZYGOTE_LOST = "zygote_lost"


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
    max_result_bytes: int = 16 << 20
    result_limit_name: str = "max_result_bytes"
    """What sets ``max_result_bytes``, for messages: the task's
    ``max_result_bytes``, or ``max_result_bytes or what its reply can
    carry`` when the trigger's reply (``Request.reply_limit``) has less room."""
    result_limit_setting: str = "max_result_bytes in the task's config"
    """The setting to raise for a larger result, for messages."""
    target: str | None = None
    """``"module:qualname"`` of a registered analysis (``register_analyses``):
    the child imports and calls it instead of loading ``script_path``;
    ``script`` then holds the analysis name, for messages."""


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The child's answer.

    ``end``: how the run ended, one of the ``RunEnd`` values a child says.
    ``RETURNED``: ``result`` is the function's dict, already encoded.
    Otherwise ``message`` describes what went wrong (with ``exit_code``
    for ``EXITED``); ``traceback`` is the script's, runner frames left out.
    """

    end: RunEnd = RunEnd.RETURNED
    result: msgspec.Raw = msgspec.Raw(b"null")  # msgspec decodes no Raw | None union
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
    sandbox: Mode = "best-effort"
    """How each child is confined (``bridgehost_analysis.sandbox``)."""
    network: bool = False
    """Whether a child may bind and connect TCP sockets."""
    sandbox_read: list[str] = []
    """Absolute folders every run may read besides its own (``sandbox_read``)."""
    sandbox_write: list[str] = []
    """Absolute folders every run may write besides its scratch folder."""
    warm: bool = True
    """Whether a waiting child rehearses a run (``child._warm``): the first
    run of a fork then waits on fewer page copies (lower latency online),
    for CPU spent whether or not a run comes. A batch, where every child
    runs at once and only throughput counts, turns it off."""
    scratch_root: str = ""
    """The folder (made by the host for this zygote) in which each child
    makes its scratch folder, named by its pid; the host removes it after
    the child's ``Exited``. Empty: the children keep the host's TMPDIR."""


# -- control messages -------------------------------------------------------


class Fork(msgspec.Struct, tag="fork"):
    """host -> zygote: fork ``count`` more children to wait for a spec."""

    count: int = 1


class SpecTaken(msgspec.Struct, tag="spec_taken"):
    """host -> zygote: child ``pid`` took its spec (its processes are counted
    from now on); fork another child to take its place if ``replace``."""

    pid: int
    replace: bool = True


class Kill(msgspec.Struct, tag="kill"):
    """host -> zygote: kill child ``pid`` and every process it started."""

    pid: int


class Ping(msgspec.Struct, tag="ping"):
    """host -> zygote: answer ``Pong(seq)`` (the host's watch of the zygote)."""

    seq: int


class Pong(msgspec.Struct, tag="pong"):
    """zygote -> host: the answer to ``Ping(seq)``."""

    seq: int


class Ready(msgspec.Struct, tag="ready"):
    """zygote -> host: child ``pid`` waits for its spec. Two file
    descriptors come with it: the reply socket and the output pipe's
    reading end."""

    pid: int


class Exited(msgspec.Struct, tag="exited"):
    """zygote -> host: child ``pid`` ended and was reaped, and every process
    it started is dead. ``returncode`` as in ``subprocess`` (negative: the
    signal that ended it). ``killed_for``: why bridgehost killed it, if it
    did: ``TOO_MANY_PROCESSES``, ``KILLED`` (the host asked),
    ``ZYGOTE_LOST`` (set by the host: the zygote is gone, ``returncode``
    unknown); ``None``: it ended itself. ``max_rss_kb``: its peak resident
    memory, KiB (``ru_maxrss`` of getrusage(2), from wait4), 0 when unknown."""

    pid: int
    returncode: int
    killed_for: RunEnd | None = None
    max_rss_kb: int = 0


class Failed(msgspec.Struct, tag="failed"):
    """zygote -> host, instead of any ``Ready``: the zygote cannot work
    (``message`` says why, e.g. a ``preload`` module failed to import) and
    exits."""

    message: str


ToZygote = Fork | SpecTaken | Kill | Ping
FromZygote = Ready | Exited | Failed | Pong
