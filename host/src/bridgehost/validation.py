"""msgspec validation errors as a key path and a message.

msgspec reports where a value failed as a suffix of its message,
``"Expected `int`, got `str` - at `$.tasks[0].timeout_s`"`` (msgspec's
docs, "Usage > Validation": ``https://jcristharif.com/msgspec/usage.html``).
Config errors, IPC protocol errors and request errors all turn that into
their own sentence; this is the one place that reads msgspec's format.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import msgspec

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


class ValidationIssue(NamedTuple):
    """What msgspec found wrong, and where."""

    message: str
    """msgspec's text without the location: ``"Expected `int`, got `str`"``."""
    path: str
    """Where, as msgspec writes it after ``$``: ``""`` (the value itself),
    ``".timeout_s"``, ``"[0].name"``."""

    @property
    def key(self) -> str:
        """``path`` without its leading dot: ``"timeout_s"``, ``"[0].name"``, ``""``."""
        return self.path.removeprefix(".")

    @property
    def expected(self) -> str:
        """``message`` to go after a key in a sentence: without backquotes,
        first letter lowercased (``"expected int, got str"``)."""
        text = self.message.replace("`", "")
        return text[:1].lower() + text[1:]

    @property
    def unknown_field(self) -> str | None:
        """The name of an unknown field (``forbid_unknown_fields``), else None."""
        m = _UNKNOWN.fullmatch(self.message)
        return m.group("field") if m else None

    @property
    def missing_field(self) -> str | None:
        """The name of a missing required field, else None."""
        m = _MISSING.fullmatch(self.message)
        return m.group("field") if m else None


def validation_issue(error: msgspec.ValidationError | str) -> ValidationIssue:
    """Split a ``msgspec.ValidationError`` (or its text) into message and path."""
    m = _AT.match(str(error))
    assert m is not None  # the pattern matches any text
    return ValidationIssue(m.group("msg"), m.group("path") or "")
