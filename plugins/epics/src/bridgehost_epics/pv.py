"""A small PV Access client for the examples and for checking a deployment
by hand: put and get, showing a CHAR waveform (Location, ControlAnswer, the
log PVs) as its text. Uses the EPICS_PVA_* environment, as every EPICS
client does.

    python -m bridgehost_epics.pv put MOTOR:01:Vel:SP=4.5 MOTOR:01:Trigger=1
    python -m bridgehost_epics.pv get MOTOR:01:TaskStatus PREP:01:Location

A put's value is read as an integer, else a float, else text. EPICS base's
``pvput`` and ``pvget -S`` do the same work where EPICS base is installed.
Exit status: 0, 1 when a PV could not be reached or written, 2 for usage.
"""

from __future__ import annotations

import sys

import numpy as np
from p4p.client.thread import Context
from p4p.nt.enum import ntenum

from bridgehost_epics.convert import read_long_string, to_python

TIMEOUT_S = 5.0


def parse_value(text: str) -> int | float | str:
    """``"4"`` -> 4, ``"4.5"`` -> 4.5, anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("get", "put") or (argv[0] == "put" and not all("=" in a for a in argv[1:])):
        print(__doc__, file=sys.stderr)
        return 2
    with Context("pva") as ctxt:
        for arg in argv[1:]:
            try:
                if argv[0] == "put":
                    name, _, value = arg.partition("=")
                    ctxt.put(name, parse_value(value), timeout=TIMEOUT_S)
                else:
                    raw = ctxt.get(arg, timeout=TIMEOUT_S)
                    value = raw if isinstance(raw, ntenum) else to_python(raw)  # an enum shows its state's name
                    is_text = isinstance(value, np.ndarray) and value.dtype == np.int8
                    print(arg, read_long_string(value) if is_text else value)
            except Exception as e:  # a timeout or a refused put: name the PV, go on to the next
                print(f"{arg}: {type(e).__name__}: {e}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
