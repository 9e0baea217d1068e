"""Run ruff or mypy and fail only on findings beyond the checked-in baseline.

    uv run python .ci/baseline.py ruff|mypy            # CI
    uv run python .ci/baseline.py ruff|mypy --update   # after fixing some

The baseline (``.ci/<tool>-baseline.txt``) counts the findings main had when
the tools were introduced, by file and rule: ``path CODE count``. A count
above it fails with the findings of that file and rule; fixed ones are
dropped with ``--update``, so the file only shrinks. Once it is empty, CI
runs the tools directly and this script goes.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "ruff": ["ruff", "check", "--output-format", "concise", "--exit-zero", "--no-cache"],
    "mypy": ["mypy"],
}
# A ruff line is "path:line:col: CODE message", a mypy one "path:line: error: message  [code]".
PATTERNS = {
    "ruff": re.compile(r"^(?P<path>[^:\s]+):\d+:\d+: (?P<code>[A-Z]+\d+)"),
    "mypy": re.compile(r"^(?P<path>[^:\s]+):\d+: error: .*\[(?P<code>[\w-]+)\]$"),
}


def main(tool: str, update: bool) -> int:
    result = subprocess.run(COMMANDS[tool], cwd=ROOT, capture_output=True, text=True, check=False)
    findings: dict[str, list[str]] = collections.defaultdict(list)
    for line in result.stdout.splitlines():
        match = PATTERNS[tool].match(line)
        if match:
            findings[f"{match['path']} {match['code']}"].append(line)
    if result.returncode not in ((0, 1) if tool == "mypy" else (0,)):  # 1: mypy found errors
        print(result.stdout, result.stderr, sep="\n")
        return result.returncode or 1
    path = ROOT / ".ci" / f"{tool}-baseline.txt"
    baseline = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, count = line.rpartition(" ")
                baseline[key] = int(count)
    if update:
        # The first baseline takes what is found; later ones only drop what was fixed.
        kept = {key: min(len(lines), baseline.get(key, 0) if path.exists() else len(lines)) for key, lines in findings.items()}
        body = "".join(f"{key} {count}\n" for key, count in sorted(kept.items()) if count)
        path.write_text(f"# {tool} findings allowed, by file and rule (.ci/baseline.py); only ever shrinks\n{body}")
        print(f"{tool}: baseline {sum(kept.values())} findings")
        return 0
    new = {key: lines for key, lines in findings.items() if len(lines) > baseline.get(key, 0)}
    total = sum(len(lines) for lines in findings.values())
    for key, lines in sorted(new.items()):
        print(f"{key}: {len(lines)} found, {baseline.get(key, 0)} allowed by {path.name}:")
        print("\n".join(f"  {line}" for line in lines))
    if new:
        print(f"{tool}: findings beyond the baseline; fix them (`uv run {' '.join(COMMANDS[tool][:2])}` lists all)")
        return 1
    fixed = sum(baseline.values()) - total
    print(f"{tool}: {total} findings, all in the baseline" + (f"; {fixed} fixed: run with --update" if fixed > 0 else ""))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} ruff|mypy [--update]")
    sys.exit(main(sys.argv[1], "--update" in sys.argv[2:]))
