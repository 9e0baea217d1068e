"""A small PV Access client for the EPICS example: put and get, showing a
CHAR waveform (State's neighbours Location, ControlAnswer, the log PVs) as
its text. Uses the EPICS_PVA_* environment, as every EPICS client does.

    uv run python examples/steps/pv.py put PREP:01:Pause=1
    uv run python examples/steps/pv.py get PREP:01:State PREP:01:Location
"""

import sys

import numpy as np
from p4p.client.thread import Context

from bridgehost_epics.convert import read_long_string


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("get", "put"):
        print(__doc__, file=sys.stderr)
        return 2
    with Context("pva") as ctxt:
        for arg in argv[1:]:
            if argv[0] == "put":
                name, _, value = arg.partition("=")
                ctxt.put(name, int(value), timeout=5.0)
            else:
                value = ctxt.get(arg, timeout=5.0)
                text = read_long_string(value) if isinstance(value, np.ndarray) and value.dtype == np.int8 else value
                print(arg, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
