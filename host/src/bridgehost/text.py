"""Cutting long text for messages and logs.

A script may raise an exception with a 10 MB message; a reply or a log line
must stay readable and fit in a frame. The start of such a text names the
exception's type and the end of a traceback the line that raised, so the
middle is what goes.
"""

from __future__ import annotations


def cut_middle(text: str, limit: int, *, inline: bool = False) -> str:
    """``text`` if at most ``limit`` characters, else its start and end with
    a marker saying how many characters were cut between them: on a line of
    its own (``\n[... N characters cut ...]\n``), or with ``inline`` between
    spaces, for a value quoted in a one-line message. The result is at most
    ``limit`` characters when ``limit`` leaves room for the marker (about 30)."""
    if len(text) <= limit:
        return text
    around = " " if inline else "\n"
    room = len(f"{around}[... {len(text)} characters cut ...]{around}")
    keep = max(0, limit - room) // 2
    return f"{text[:keep]}{around}[... {len(text) - 2 * keep} characters cut ...]{around}{text[len(text) - keep:]}"
