"""Check that a value is plain JSON data before it is written or replied.

msgspec would encode NaN as ``null`` and refuse a set with a message that
does not say where the set was; an analysis result and the files of a run
must be exact, so every value goes through ``to_json_value`` first, which
names the offending place (``result['stats'][2]``) and what to do about it.
"""

from __future__ import annotations

import math
import sys
from typing import Any

_CONTAINER_HINTS: dict[type, str] = {
    set: "convert it to a list, e.g. sorted(value)",
    frozenset: "convert it to a list, e.g. sorted(value)",
    bytes: "decode it to a str, or store binary data in the datastore instead",
    bytearray: "decode it to a str, or store binary data in the datastore instead",
    complex: "return its real and imaginary parts as two floats",
}
_PLAIN = "use only dict (str keys), list, tuple, str, int, float, bool and None"


class NotJSONError(ValueError):
    """A value is not plain JSON data.

    ``path`` locates it (``result['stats'][2]``), ``type_name`` is its type,
    ``hint`` says how to fix it; ``str()`` gives all three.
    """

    def __init__(self, path: str, type_name: str, problem: str, hint: str):
        self.path = path
        self.type_name = type_name
        self.hint = hint
        super().__init__(f"{path} {problem}: {hint}")


class TooLarge(ValueError):
    """A value's JSON would be larger than the size it was allowed."""


def to_json_value(value: Any, where: str = "result", *, max_bytes: int | None = None) -> Any:
    """Return ``value`` as plain JSON data, or raise ``NotJSONError``.

    Accepts dict (str keys), list, tuple (becomes a list), str, int, float,
    bool and None, nested to any depth. numpy scalars become Python scalars
    (``.item()``); everything else is refused: numpy arrays, sets, bytes,
    custom classes, dict keys that are not str, and NaN or infinite floats
    (JSON has no such numbers; msgspec would silently write ``null``).
    ``where`` names the value in the error (``result``, ``custom_params``).

    With ``max_bytes``, raises ``TooLarge`` as soon as the JSON is sure to
    be longer (counting a lower bound of each item's length), before
    anything is encoded: msgspec 0.22's encoder crashes the process with
    SIGSEGV when it cannot grow its buffer under RLIMIT_AS.
    """
    try:
        return _Converter(max_bytes).convert(value, where)
    except RecursionError:
        raise NotJSONError(where, type(value).__name__, "is nested too deeply", "flatten it") from None


class _Converter:
    def __init__(self, max_bytes: int | None):
        self.max_bytes = max_bytes
        self.left = max_bytes

    def count(self, size: int, path: str) -> None:
        """Take ``size`` bytes (at least what the item encodes to) off the budget."""
        if self.left is not None:
            self.left -= size
            if self.left < 0:
                raise TooLarge(f"the JSON is longer than {self.max_bytes} bytes by {path}")

    def convert(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            self.count(len(value) + 2 if isinstance(value, str) else 4, path)
            return value
        if isinstance(value, int):
            self.count(1 + value.bit_length() * 3 // 10, path)  # decimal digits, at least
            return value
        if isinstance(value, float):  # np.float64 is a float subclass: checked here too
            if not math.isfinite(value):
                raise NotJSONError(
                    path, "float", f"is {value!r}, which JSON cannot represent", "replace it with None or a finite number"
                )
            self.count(3, path)
            return float(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise NotJSONError(
                        path,
                        "dict",
                        f"has the key {key!r} of type {type(key).__name__}; JSON object keys must be str",
                        f"convert the key, e.g. str({key!r})",
                    )
                self.count(len(key) + 4, path)
                out[key] = self.convert(item, f"{path}[{key!r}]")
            return out
        if isinstance(value, (list, tuple)):
            self.count(2 + len(value), path)
            return [self.convert(item, f"{path}[{i}]") for i, item in enumerate(value)]
        # numpy is not imported here: a process that never loaded it (a run
        # without traces) holds no numpy value, and skips its ~250 ms import.
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.generic):
            return self.convert(value.item(), path)
        name = type(value).__name__
        if np is not None and isinstance(value, np.ndarray):
            hint = "call .tolist() on it"
        else:
            hint = next((h for t, h in _CONTAINER_HINTS.items() if isinstance(value, t)), _PLAIN)
        raise NotJSONError(path, name, f"is a {name}, which is not JSON data", hint)
