"""Which runs a batch analyses: globs over the datastore, or a list in a file.

Both are generators: the datastore is walked one folder at a time with
``os.scandir`` (scandir(3)), so a million runs are never listed in memory at
once. Globs are ``fnmatch`` patterns (``*``, ``?``, ``[seq]``), matched
case-sensitively against each id.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from bridgehost_analysis.datastore import Datastore, InvalidId, check_id


class RunKey(NamedTuple):
    """One run of the datastore: ``results/<project_id>/<definition_id>/<run_id>/``."""

    project_id: str
    definition_id: str
    run_id: str

    def __str__(self) -> str:
        return f"{self.project_id}/{self.definition_id}/{self.run_id}"


class BadRunList(ValueError):
    """A line of a ``--runs-from`` file is not ``project/definition/run``;
    the message names the file and the line."""


_MAGIC = re.compile(r"[*?\[]")


def _matcher(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def _subfolders(path: str, pattern: re.Pattern[str]) -> Iterator[str]:
    """Names of the folders in ``path`` matching ``pattern`` that are valid
    ids (a hidden or malformed folder is not a run), as scandir yields them."""
    try:
        it = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        for entry in it:
            try:
                if not entry.is_dir():
                    continue
                check_id("id", entry.name)
            except (OSError, InvalidId):
                continue
            if pattern.match(entry.name):
                yield entry.name


def scan(store: Datastore, project: str = "*", definition: str = "*", run: str = "*") -> Iterator[RunKey]:
    """Every run of ``store`` whose ids match the three globs, streamed.

    A level whose glob has no wildcard is not listed at all (one ``stat``),
    so ``scan(store, "acme", "traction", "*")`` reads only that definition's
    folder. Order: as the file system returns entries (not sorted).
    """
    results = str(store.results_dir)
    levels = [_matcher(p) for p in (project, definition, run)]
    literal = [None if _MAGIC.search(p) else p for p in (project, definition, run)]

    def names(path: str, level: int) -> Iterator[str]:
        name = literal[level]
        if name is not None:  # no wildcard: look it up instead of listing its parent
            try:
                check_id("id", name)
            except InvalidId:
                return
            if os.path.isdir(os.path.join(path, name)):
                yield name
            return
        yield from _subfolders(path, levels[level])

    for p in names(results, 0):
        p_path = os.path.join(results, p)
        for d in names(p_path, 1):
            d_path = os.path.join(p_path, d)
            for r in names(d_path, 2):
                yield RunKey(p, d, r)


MAX_LINE = 4096
"""The longest line of a run list that is read (a run is at most 386
characters); a longer one is refused unless it is a comment."""


def _lines(f: BinaryIO, path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(number, text)`` of each line, each read ``MAX_LINE`` bytes at most
    at a time, so no line is held whole however long it is."""
    number = 0
    while line := f.readline(MAX_LINE):
        number += 1
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            if not line.lstrip().startswith(b"#"):
                raise BadRunList(
                    f"{path}, line {number} is longer than {MAX_LINE} characters: not project/definition/run "
                    "(is it the list of runs?)"
                )
            while len(line) == MAX_LINE and not line.endswith(b"\n"):  # the rest of a long comment
                line = f.readline(MAX_LINE)
            continue
        try:
            yield number, line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise BadRunList(
                f"{path}, line {number} is not UTF-8 text: give a text file of project/definition/run lines"
            ) from None


def read_run_list(path: str | os.PathLike[str]) -> Iterator[RunKey]:
    """The runs listed in the file ``path``, one ``project/definition/run``
    a line, streamed. The file is UTF-8 text (a byte order mark is skipped,
    lines may end in CRLF). Blank lines and lines starting with ``#`` are
    skipped. Raises ``BadRunList`` naming the line for anything else (a line
    that is not UTF-8, or longer than ``MAX_LINE``), and ``OSError`` if the
    file cannot be read."""
    with open(path, "rb") as f:
        for number, line in _lines(f, path):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split("/")
            if len(parts) != 3:
                raise BadRunList(
                    f"{path}, line {number}: {text!r} is not project/definition/run "
                    "(three ids separated by '/', e.g. acme/traction/2026-04-20T12-00-00Z)"
                )
            try:
                for field, value in zip(("project_id", "definition_id", "run_id"), parts, strict=True):
                    check_id(field, value)
            except InvalidId as e:
                raise BadRunList(f"{path}, line {number}: {e}") from None
            yield RunKey(*parts)


def exists(store: Datastore, key: RunKey) -> bool:
    """Whether the run's folder exists."""
    return Path(store.results_dir, *key).is_dir()
