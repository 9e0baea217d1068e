"""Write a realistic traction test run into a datastore.

    python examples/traction/generate.py [--datastore DIR] [--run-id ID] ...

What a control program would have saved when a traction test finishes: the
project and configuration, a cycle history and a force trace (see
``bridgehost_analysis.traction.generate_run``). Prints a summary on stderr
and, on stdout, the ``data`` of the ``python.run_analysis`` request that
analyses the run, ready for ``bridgehost call``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridgehost_analysis.traction import SCRIPT, generate_run


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datastore", type=Path, default=here / "datastore", help="default: datastore/ beside this file"
    )
    parser.add_argument("--project-id", default="acme-traction")
    parser.add_argument("--definition-id", default="translational-traction")
    parser.add_argument("--run-id", default="2026-04-20T12-00-00Z")
    parser.add_argument("--samples", type=int, default=45_200, help="trace length (default 45200: 45.2 s at 1 kHz)")
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20260420, help="random seed of the noise")
    args = parser.parse_args(argv)

    run = generate_run(
        args.datastore,
        project_id=args.project_id,
        definition_id=args.definition_id,
        run_id=args.run_id,
        samples=args.samples,
        cycles=args.cycles,
        seed=args.seed,
    )
    print(f"wrote run {run.project_id}/{run.definition_id}/{run.run_id}", file=sys.stderr)
    print(f"  folder: {run.path}", file=sys.stderr)
    print(f"  script: {run.store.scripts_dir / SCRIPT}", file=sys.stderr)
    print(json.dumps(run.request(SCRIPT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
