"""What the task and its child process say to each other.

The parent writes one ``ChildSpec`` (JSON) to the child's stdin and closes
it. The child answers with one ``Reply`` (JSON) on its stdout, which is
reserved for that: the child moves the script's own stdout onto stderr
before running anything, so prints never corrupt the reply.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

RawData = Literal["lists", "arrays"]
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
    memory_limit_mb: int | None = None
    cpu_limit_s: float | None = None
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
