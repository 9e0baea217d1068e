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
