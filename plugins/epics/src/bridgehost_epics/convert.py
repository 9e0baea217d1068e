"""p4p's normative types (NT) to plain Python and NumPy values.

p4p's client unwraps NT values into its own subclasses (``ntfloat``,
``ntenum``, ``ntnumericarray``, ``ntndarray``, ...) that carry alarm and
timestamp attributes. A task wants plain values:

==================  ==================================================
NTScalar            ``float``, ``int``, ``bool`` or ``str``
NTEnum              ``int``: the index of the state (``Busy`` -> 0 or 1)
NTScalarArray       ``numpy.ndarray`` (numbers) or ``list[str]``
NTNDArray           ``numpy.ndarray`` in the image's shape
==================  ==================================================

Reference: the EPICS normative types specification (NTScalar, NTEnum,
NTScalarArray, NTNDArray) and p4p's "unwrap" documentation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from p4p.nt.enum import ntenum
from p4p.nt.ndarray import ntndarray
from p4p.nt.scalar import ntbool, ntfloat, ntint, ntnumericarray, ntstr, ntstringarray


def to_python(value: Any) -> Any:
    """A plain Python or NumPy value for an unwrapped p4p value (see the
    module table). A value p4p could not unwrap (a ``p4p.Value`` of another
    structure) is returned as it is."""
    if isinstance(value, ntbool):
        return bool(value)
    if isinstance(value, ntenum):
        return int(value)
    if isinstance(value, ntint):
        return int(value)
    if isinstance(value, ntfloat):
        return float(value)
    if isinstance(value, ntstr):
        return str(value)
    if isinstance(value, ntstringarray):
        return [str(v) for v in value]
    if isinstance(value, (ntndarray, ntnumericarray)):
        return np.array(value)  # a plain ndarray that owns its data
    return value


def long_string(text: str | bytes) -> np.ndarray:
    """The value to put to a CHAR waveform holding ``text`` (UTF-8): the
    usual form of a string longer than a ``stringin``'s 40 characters
    (EPICS record reference, waveform). The caller keeps it within NELM."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return np.frombuffer(data, dtype=np.int8)


def read_long_string(value: Any) -> str:
    """The text of a CHAR waveform's value (up to a NUL, if any)."""
    data = np.asarray(value, dtype=np.int8).tobytes()
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")
