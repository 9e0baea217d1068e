"""Cutting long text for messages and logs.

A script may raise an exception with a 10 MB message; a reply or a log line
must stay readable and fit in a frame. The start of such a text names the
exception's type and the end of a traceback the line that raised, so the
middle is what goes.
"""

from __future__ import annotations


def cut_middle(text: str, limit: int) -> str:
    """``text`` if at most ``limit`` characters, else its start and end with
    a marker saying how many characters were cut between them
    (``[... N characters cut ...]``). The result is at most ``limit``
    characters when ``limit`` leaves room for the marker (64 or more)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 64) // 2
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters cut ...]\n{text[len(text) - keep:]}"
