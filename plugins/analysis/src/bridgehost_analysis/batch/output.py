"""The output of a batch: one row per run, as CSV, JSON Lines or Parquet.

Rows are appended to ``<output>.partial`` (JSON Lines) as runs finish, so
memory stays flat however many runs there are; ``finish`` then writes the
file in the format its suffix names and removes the spool. The spool is
held with an exclusive ``flock`` (flock(2)) from ``Output()`` to the end of
``finish``: a second batch naming the same output is refused at its start
(``OutputError``) instead of truncating the first one's rows.

- ``.jsonl``: one object a line: ``run``, ``status``, ``duration_s``,
  ``error``, ``skipped``, then the function's keys with their JSON values;
- ``.csv``: the same columns (RFC 4180, header first); a nested value (a
  list, an object) is its JSON text, ``None`` an empty field;
- ``.parquet``: the same columns, through pyarrow (the extra
  ``bridgehost-analysis[parquet]``); a column whose values are all bools,
  all integers or all numbers gets that type, any other is text (nested
  values as JSON text).

The error column holds the first line of the error message. A key of the
function's dict that is also a fixed column's name is written as
``result.<key>``.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from bridgehost_analysis.batch.analyse import Row
from bridgehost_analysis.datastore import write_atomic

FIXED = ("run", "status", "duration_s", "error", "skipped")
RENAMED = "result."
"""The prefix of a returned key whose column would clash (see the module doc)."""
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
FORMATS = (".csv", ".jsonl", ".parquet")


class OutputError(ValueError):
    """An output file that cannot be written as asked."""


def check_output(path: Path) -> None:
    """Raise ``OutputError`` unless ``path`` has a known suffix, its folder
    exists, it is not a folder itself, and pyarrow is installed for ``.parquet``."""
    if path.suffix not in FORMATS:
        raise OutputError(f"--output {path}: unknown format {path.suffix!r}; name a file ending in {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise OutputError(f"--output {path}: the folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise OutputError(f"--output {path} is a folder; name a file (e.g. {path / ('rows' + path.suffix)})")
    if path.suffix == ".parquet":
        try:
            import pyarrow  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            raise OutputError(
                "--output .parquet needs pyarrow: pip install 'bridgehost-analysis[parquet]' (or write .csv or .jsonl)"
            ) from None


def flat(row: Row) -> dict[str, Any]:
    """The row's columns: the fixed ones, then the function's keys."""
    out: dict[str, Any] = {
        "run": row.run,
        "status": row.status,
        "duration_s": row.duration_s,
        "error": row.error.split("\n", 1)[0],
        "skipped": row.skipped,
    }
    result = msgspec.json.decode(row.result)
    if isinstance(result, dict):
        for key, value in result.items():
            out[column_of(key)] = value
    return out


def column_of(key: str) -> str:
    """The column of a returned key: ``result.<key>`` for a fixed column's
    name or a key starting with ``result.``, else the key (one-to-one)."""
    return RENAMED + key if key in FIXED or key.startswith(RENAMED) else key


class Output:
    """Collects rows into ``path`` (see the module doc). ``add`` appends a
    row to the spool; ``finish`` writes the file."""

    def __init__(self, path: Path):
        """Open and lock the spool; raises ``OutputError`` if another batch
        holds it or it cannot be created."""
        self.path = path
        self.spool_path = path.with_name(path.name + ".partial")
        self.spool = os.fdopen(self._lock_spool(), "wb")  # open for the batch's life, closed by finish()
        self.columns: dict[str, None] = dict.fromkeys(FIXED)  # ordered set: first seen first
        self.rows = 0

    def _lock_spool(self) -> int:
        """The spool's descriptor, locked and emptied. A spool left by a
        batch that was killed is taken over; one whose batch runs is not."""
        while True:
            try:
                fd = os.open(self.spool_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as e:
                raise OutputError(f"--output {self.path}: cannot create {self.spool_path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(
                    f"--output {self.path}: another batch is writing it (its rows go to {self.spool_path}); "
                    "wait for that batch to end, or name another file"
                ) from None
            try:  # still the spool? (the batch that held it may have renamed or removed it meanwhile)
                same = os.stat(self.spool_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                return fd
            os.close(fd)

    def add(self, row: Row) -> None:
        columns = flat(row)
        for key in columns:
            if key not in self.columns:
                self.columns[key] = None
        self.spool.write(msgspec.json.encode(columns) + b"\n")
        self.rows += 1

    def _read(self) -> Iterator[dict[str, Any]]:
        with open(self.spool_path, "rb") as f:
            for line in f:
                yield msgspec.json.decode(line)

    def finish(self) -> None:
        """Write the output file atomically from the spool, then remove the
        spool and release it. On an error (``OSError``: the disk is full)
        the spool is left, with every row."""
        try:
            self.spool.flush()
            suffix = self.path.suffix
            if suffix == ".jsonl":
                os.fsync(self.spool.fileno())
                os.replace(self.spool_path, self.path)
            else:
                if suffix == ".csv":
                    write_atomic(self.path, self._write_csv)
                else:
                    self._write_parquet()
                self.spool_path.unlink(missing_ok=True)
        finally:
            self.spool.close()  # releases the lock: after the rename or removal, never before

    def _write_csv(self, f: Any) -> None:
        import io

        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(self.columns)
        for row in self._read():
            writer.writerow(_cell(row.get(c)) for c in self.columns)
        text.flush()
        text.detach()

    def _write_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        types = {c: _kind(None) for c in self.columns}
        for row in self._read():  # a first pass for the column types
            for c in self.columns:
                types[c] = _merge(types[c], _kind(row.get(c)))
        arrow = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "null": pa.string(), "text": pa.string()}
        schema = pa.schema([(c, arrow[types[c]]) for c in self.columns])
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict[str, Any]] = []
            for row in self._read():
                batch.append({c: _typed(row.get(c), types[c]) for c in self.columns})
                if len(batch) >= 65536:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch.clear()
            if batch or not self.rows:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):  # JSON's integers have no bound; int64's do (a float64 would round them)
        return "int" if INT64_MIN <= value <= INT64_MAX else "text"
    if isinstance(value, float):
        return "float"
    return "text"


def _merge(a: str, b: str) -> str:
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    return "text"


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "text":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if kind == "float":
        return float(value)
    return value
