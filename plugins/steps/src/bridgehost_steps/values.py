"""Plain-JSON export of what a process reports, and Automancer's diagnostics (https://github.com/slietar/automancer).

Locations, analyses, points and results leave the host as JSON. ``export``
accepts what Automancer's examples pass: an object with an ``export()``
method (their ``Location`` dataclass), a msgspec Struct, a dataclass,
or plain JSON values (dict, list, str, int, float, bool, None).
"""

from __future__ import annotations

from typing import Any

import msgspec


def export(value: Any) -> Any:
    """``value`` as plain JSON values.

    Calls ``value.export()`` when it exists (and exports what it returns).
    Raises ``TypeError`` naming the type when the value is not
    representable as JSON (a set, a socket, bytes).
    """
    exporter = getattr(value, "export", None)
    if callable(exporter) and not isinstance(value, type):
        value = exporter()
    try:
        return msgspec.to_builtins(value, enc_hook=_export_nested, str_keys=True)
    except (TypeError, msgspec.EncodeError) as e:
        raise TypeError(
            f"cannot export {type(value).__name__} as JSON ({e}); give it an export() method "
            "returning a dict, or make it a msgspec Struct or a dataclass"
        ) from None


def _export_nested(value: Any) -> Any:
    exporter = getattr(value, "export", None)
    if callable(exporter):
        return exporter()
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} is not JSON")


class GenericDiagnostic:
    """An error or warning built from an exception or a message (Automancer's
    ``am.GenericDiagnostic(e)``). Exports as ``{"kind": "generic",
    "message": ..., "exception": "<the exception's type name, or empty>"}``."""

    __slots__ = ("exception", "message")

    def __init__(self, source: BaseException | str):
        if isinstance(source, BaseException):
            self.message = str(source) or type(source).__name__
            self.exception = type(source).__name__
        else:
            self.message, self.exception = str(source), ""

    def export(self) -> dict[str, str]:
        return {"kind": "generic", "message": self.message, "exception": self.exception}

    def __repr__(self) -> str:
        return f"GenericDiagnostic({self.message!r})"


class FileCreatedEffect(msgspec.Struct, frozen=True):
    """An effect: the process created a file (Automancer's
    ``am.FileCreatedEffect('file.txt')``)."""

    path: str

    def export(self) -> dict[str, str]:
        return {"kind": "file-created", "path": self.path}


class Analysis(msgspec.Struct, kw_only=True):
    """A runtime analysis (Automancer: "errors, warnings and effects"). Each item is
    exported with ``export``; ``send_analysis`` announces it as a
    ``diagnostic`` event ``{"errors": [...], "warnings": [...], "effects": [...]}``."""

    errors: list[Any] = []
    warnings: list[Any] = []
    effects: list[Any] = []

    def export(self) -> dict[str, list[Any]]:
        return {
            "errors": [export(e) for e in self.errors],
            "warnings": [export(w) for w in self.warnings],
            "effects": [export(e) for e in self.effects],
        }
