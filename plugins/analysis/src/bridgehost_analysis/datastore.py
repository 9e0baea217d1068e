"""The datastore: analysis scripts and the saved data of test runs.

Layout (reference: ``docs/datastore.md``; the ``scripts/`` and ``results/``
folders and the contents of a run come from AutoCore's manual, "Python Analysis Integration")::

    <root>/
      scripts/<name>.py                          analysis scripts
      results/<project_id>/<definition_id>/<run_id>/
        project.json                             {"customer": ..., "operator": ...}
        configuration.json                       {"control_load": 500.0, ...}
        results.json                             results saved so far
        cycle_history.jsonl                      one JSON object per cycle, appended
        traces/<trace_name>/<channel>.npy        one 1-D numeric array per channel

Writers (a control program written in Python, tests, the examples) use
``Datastore(root).run(project_id, definition_id, run_id)``, a ``Run``. Every
file is replaced atomically and durably by ``write_atomic``; the cycle
history is appended line by line by ``append_line``. The analysis child
process reads a run back into the ``ctx`` dict with ``Run.ctx()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

from bridgehost_analysis.jsonvalue import to_json_value

if TYPE_CHECKING:
    import numpy as np

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""What a project, definition or run id, a trace name and a channel name
must match: a letter or digit, then up to 127 letters, digits, ``.``, ``_``
or ``-``. So ``2026-04-20T12-00-00Z`` is valid; ``..``, ``a/b`` and ``""`` are
not: an id is one folder name and can never lead out of its parent."""
_ID = re.compile(ID_PATTERN)

SCRIPTS_DIR = "scripts"
RESULTS_DIR = "results"
PROJECT_FILE = "project.json"
CONFIGURATION_FILE = "configuration.json"
RESULTS_FILE = "results.json"
CYCLES_FILE = "cycle_history.jsonl"
TRACES_DIR = "traces"
_LOCK_FILE = ".lock"


class DatastoreError(Exception):
    """Base of the datastore's own errors."""


class InvalidId(DatastoreError, ValueError):
    """An id or name does not match ``ID_PATTERN``; ``field`` names which."""

    def __init__(self, field: str, value: object):
        self.field = field
        self.value = value
        super().__init__(
            f"{field} {value!r} is not valid: it must match {ID_PATTERN} "
            "(a letter or digit, then up to 127 letters, digits, '.', '_' or '-')"
        )


class InvalidScript(DatastoreError, ValueError):
    """A script name is refused or names no script in ``scripts/``."""


class RunNotFound(DatastoreError):
    """The run's folder does not exist."""


class CorruptData(DatastoreError):
    """A file of a run exists but cannot be read as what it should be."""


class ResultsTooLarge(DatastoreError):
    """A merge would make ``results.json`` larger than its bound (or it is
    larger already): nothing was written. ``path`` is the file, ``size`` the
    bytes it would have (or has), ``limit`` the bound, both in bytes."""

    def __init__(self, path: Path, size: int, limit: int, *, already: bool = False):
        self.path, self.size, self.limit, self.already = path, size, limit, already
        what = "is already" if already else "would become"
        super().__init__(f"{path} {what} {size} bytes, over the bound of {limit} bytes; nothing was written")


def check_id(field: str, value: object) -> str:
    """Return ``value`` if it is a str matching ``ID_PATTERN``, else raise
    ``InvalidId`` naming ``field`` (``"run_id"``, ``"trace name"``)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidId(field, value)
    return value


# -- durable writes -----------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """fsync a folder, so the entries created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every folder it creates."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it first
            folder.mkdir()
        fsync_dir(folder.parent)


def temp_name(name: str) -> str:
    """The name ``write_atomic`` gives the temporary file of ``name``:
    ``.<name>.<12 hex digits>.tmp``."""
    return f".{name}.{os.urandom(_TEMP_HEX // 2).hex()}.tmp"  # what secrets.token_hex does, without its imports


def remove_temps(folder: Path, name: str) -> list[str]:
    """Remove the temporary files of ``name`` in ``folder`` that a writer
    killed during ``write_atomic`` left (exactly ``temp_name``'s pattern;
    nothing else); returns the names removed.

    Only safe while no other writer of ``name`` can be in ``write_atomic``:
    the caller holds the lock all writers of ``name`` take."""
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{{_TEMP_HEX}}}\.tmp")
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    if removed:
        fsync_dir(folder)
    return removed


_TEMP_HEX = 12


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Replace the file ``path`` with ``data`` atomically and durably.

    ``data`` is bytes, or a function that writes to the open binary file.
    The content goes to a temporary file in the same folder, is flushed and
    fsynced, renamed over ``path`` with ``os.replace`` and the folder is
    fsynced: a reader sees the old file or the new one, never a mix, and a
    crash at any point leaves one of the two. On any error the temporary
    file is removed, ``path`` is untouched and the error propagates.
    """
    path = Path(path)
    tmp = path.with_name(temp_name(path.name))
    # 0o666 and O_EXCL: umask applies like for any file, and no clobbering.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def append_line(path: Path, line: bytes) -> None:
    """Append one ``\\n``-terminated line to ``path`` durably.

    The one write that is not a ``write_atomic`` replace: rewriting a growing
    history on every cycle would cost its whole size each time. Instead the
    line is the atomic unit: readers ignore a last line without its ``\\n``
    (an append cut short by a crash), and the next append cuts that torn
    tail off before writing.
    """
    if not line.endswith(b"\n") or b"\n" in line[:-1]:
        raise ValueError("append_line() takes exactly one line ending with b'\\n'")
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            whole = os.pread(fd, size, 0)
            os.ftruncate(fd, whole.rfind(b"\n") + 1)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def _encode_object(value: Mapping[str, Any], what: str) -> bytes:
    """A dict file's bytes: checked plain JSON, indented for people who look."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    return _format(to_json_value(dict(value), what))


def _format(plain: dict[str, Any]) -> bytes:
    """A dict of plain JSON values, as a dict file's bytes (indented)."""
    return msgspec.json.format(msgspec.json.encode(plain), indent=2) + b"\n"


# -- the datastore --------------------------------------------------------------


class Datastore:
    """A datastore folder: ``scripts/`` and ``results/`` below ``root``.

    Creating the object touches nothing; folders are made by the first write.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Datastore({str(self.root)!r})"

    @property
    def scripts_dir(self) -> Path:
        return self.root / SCRIPTS_DIR

    @property
    def results_dir(self) -> Path:
        return self.root / RESULTS_DIR

    def run(self, project_id: str, definition_id: str, run_id: str) -> Run:
        """The run with these ids (it need not exist yet). Raises ``InvalidId``."""
        return Run(self, project_id, definition_id, run_id)

    def script_path(self, name: str) -> Path:
        """The resolved path of the script ``name``, e.g. ``"analyze_traction.py"``.

        ``name`` is relative to ``scripts/`` (subfolders allowed) and ends in
        ``.py``. Refused with ``InvalidScript``: absolute paths, ``..``, and
        anything that, symlinks resolved, lands outside ``scripts/`` (itself
        resolved, so ``scripts/`` may be a link to a shared folder); also a
        name that is no existing file, or that the file system cannot look up
        (longer than NAME_MAX or PATH_MAX, a link loop: path_resolution(7)).
        """
        if not isinstance(name, str) or not name or "\0" in name:
            raise InvalidScript(f"script must be a non-empty file name, got {name!r}")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise InvalidScript(
                f"script {name!r} is refused: give a file name relative to the scripts folder, "
                "without '..' (e.g. 'analyze_traction.py')"
            )
        if rel.suffix != ".py":
            raise InvalidScript(f"script {name!r} is refused: scripts are Python files ending in '.py'")
        try:
            scripts = self.scripts_dir.resolve()
            path = (scripts / rel).resolve()
            if not path.is_relative_to(scripts):
                raise InvalidScript(
                    f"script {name!r} is refused: it is a link that leads out of the scripts folder "
                    f"{self.scripts_dir} (to {path}); put the script itself in the scripts folder"
                )
            is_file = path.is_file()
        except (OSError, RuntimeError) as e:  # a name too long, a link loop (RuntimeError before Python 3.13)
            shown = name if len(name) <= 80 else f"{name[:60]}...{name[-16:]} ({len(name)} characters)"
            reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e).split(" from ", 1)[0]
            raise InvalidScript(
                f"script '{shown}' cannot be looked up in {self.scripts_dir}: {reason}; "
                "give the name of a .py file there"
            ) from None
        if not is_file:
            # The folder as configured, not resolved: that is where the user puts scripts.
            raise InvalidScript(f"script {name!r} not found in {self.scripts_dir}: put the .py file there")
        return path

    def install_script(self, source: str | os.PathLike[str], name: str | None = None) -> Path:
        """Copy the file ``source`` into ``scripts/`` as ``name`` (default: its
        own name), atomically; a script already there with the same bytes is
        left as it is (it may be a link). Returns the script's path."""
        source = Path(source)
        target = self.scripts_dir / (name or source.name)
        content = source.read_bytes()
        if target.is_file() and target.read_bytes() == content:
            return target
        make_dirs(target.parent)
        write_atomic(target, content)
        return target


class Run:
    """One test run: ``results/<project_id>/<definition_id>/<run_id>/``.

    Writers create the folder on first use. Readers raise ``RunNotFound``
    when it is missing and ``CorruptData`` when a file cannot be decoded; a
    file that was never written reads as empty (``{}``, ``[]``).
    """

    def __init__(self, store: Datastore, project_id: str, definition_id: str, run_id: str):
        self.store = store
        self.project_id = check_id("project_id", project_id)
        self.definition_id = check_id("definition_id", definition_id)
        self.run_id = check_id("run_id", run_id)
        self.path = store.results_dir / project_id / definition_id / run_id

    def __repr__(self) -> str:
        return f"<Run {self.project_id}/{self.definition_id}/{self.run_id} in {self.store.root}>"

    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def ids(self) -> dict[str, str]:
        """``{"project_id": ..., "definition_id": ..., "run_id": ...}``."""
        return {"project_id": self.project_id, "definition_id": self.definition_id, "run_id": self.run_id}

    def request(
        self, script: str, function: str = "calculate_results", custom_params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ``data`` of a ``python.run_analysis`` request for this run."""
        return {"script": script, "function": function, **self.ids, "custom_params": dict(custom_params or {})}

    # -- writers --

    def create(self) -> Run:
        """Make the run's folder (durably) if it does not exist; returns self."""
        make_dirs(self.path)
        return self

    def save(
        self,
        *,
        project: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        results: Mapping[str, Any] | None = None,
    ) -> None:
        """Write whichever of the three dicts are given, each replacing its
        file. Raises ``NotJSONError`` (naming the key) for non-JSON values."""
        files = [(PROJECT_FILE, project, "project"), (CONFIGURATION_FILE, configuration, "configuration")]
        encoded = [(self.path / f, _encode_object(v, what)) for f, v, what in files if v is not None]
        self.create()
        for path, data in encoded:
            write_atomic(path, data)
        if results is not None:
            self.save_results(results)

    def save_results(self, results: Mapping[str, Any]) -> None:
        """Replace the saved results with ``results``."""
        data = _encode_object(results, "results")
        self.create()
        with self._lock():
            self._remove_temps()
            write_atomic(self.path / RESULTS_FILE, data)

    def merge_results(self, results: Mapping[str, Any], *, max_bytes: int | None = None) -> dict[str, Any]:
        """Update the saved results with the keys of ``results`` (a shallow
        merge: a key given replaces the saved value) and return the merged
        dict. Nothing is written if ``results`` is not plain JSON
        (``NotJSONError``), nor, with ``max_bytes``, if the merged file would
        be larger than ``max_bytes`` bytes (``ResultsTooLarge``; a saved file
        larger than that already is refused before it is read)."""
        new = to_json_value(dict(results), "results")
        self.create()
        path = self.path / RESULTS_FILE
        with self._lock():  # read-modify-write: one merger at a time
            self._remove_temps()
            if max_bytes is not None:
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    if size > max_bytes:
                        raise ResultsTooLarge(path, size, max_bytes, already=True)
            # The saved values were decoded from JSON, so they are plain JSON already:
            # not checked again (to_json_value goes less deep than msgspec reads).
            merged = {**self.results(), **new}
            data = _format(merged)
            if max_bytes is not None and len(data) > max_bytes:
                raise ResultsTooLarge(path, len(data), max_bytes)
            write_atomic(path, data)
        return merged

    def append_cycle(self, cycle: Mapping[str, Any]) -> None:
        """Append one cycle (a dict, e.g. ``{"cycle_index": 1, "actual_load":
        498.2}``) to the cycle history."""
        line = msgspec.json.encode(to_json_value(dict(cycle), "cycle")) + b"\n"
        self.create()
        append_line(self.path / CYCLES_FILE, line)

    def set_cycle_history(self, cycles: Iterable[Mapping[str, Any]]) -> None:
        """Replace the whole cycle history with ``cycles`` at once."""
        lines = [msgspec.json.encode(to_json_value(dict(c), f"cycles[{i}]")) + b"\n" for i, c in enumerate(cycles)]
        self.create()
        write_atomic(self.path / CYCLES_FILE, b"".join(lines))

    def set_raw_trace(self, name: str = "trace", **channels: Any) -> None:
        """Save the trace ``name``: one ``.npy`` file per channel.

        ``channels`` are 1-D sequences of equal length (numpy arrays or lists
        of numbers), e.g. ``set_raw_trace(t=t, force=force)``, AutoCore's
        ``set_raw_trace(&trace_t, &trace_force)``. float32/float64 arrays are
        kept as they are; ints and bools are stored as float64. The trace is
        replaced as a whole: channels of an earlier save that are not given
        again are removed. Raises ``InvalidId`` for a bad trace or channel
        name and ``ValueError`` for data that is not a 1-D numeric sequence
        or channels of different lengths.
        """
        check_id("trace name", name)
        import numpy as np

        if not channels:
            raise ValueError("set_raw_trace() needs at least one channel, e.g. set_raw_trace(t=t, force=force)")
        arrays = {check_id("channel name", ch): _channel_array(name, ch, data) for ch, data in channels.items()}
        lengths = {ch: len(a) for ch, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the channels of trace {name!r} differ in length: {lengths}; a trace is sampled together")
        folder = self.path / TRACES_DIR / name
        make_dirs(folder)
        for ch, array in arrays.items():
            write_atomic(folder / f"{ch}.npy", functools.partial(np.save, arr=array, allow_pickle=False))
        stale = [p for p in folder.glob("*.npy") if p.stem not in arrays]
        for path in stale:
            path.unlink()
        if stale:
            fsync_dir(folder)

    def _remove_temps(self) -> None:
        """Under the lock every results writer takes, no write of
        ``results.json`` is in progress: a temporary of it is a leftover of
        a writer killed mid-write (SIGKILL, power loss), removed here."""
        removed = remove_temps(self.path, RESULTS_FILE)
        if removed:
            # Imported here: analysis children import this module, and logging
            # brings threading, whose at-fork hook copies ~150 pages in every fork.
            import logging

            logging.getLogger(__name__).info("run %s: removed %d temporary file(s) a killed writer left: %s", self.path, len(removed), ", ".join(removed))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.path / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- readers --

    def project(self) -> dict[str, Any]:
        return self._read_object(PROJECT_FILE)

    def configuration(self) -> dict[str, Any]:
        return self._read_object(CONFIGURATION_FILE)

    def results(self) -> dict[str, Any]:
        return self._read_object(RESULTS_FILE)

    def cycle_history(self) -> list[dict[str, Any]]:
        """The cycles in order. A last line without its ``\\n`` is an append
        that a crash cut short and is ignored."""
        data = self._read_bytes(CYCLES_FILE)
        if data is None:
            return []
        cycles = []
        lines = data.split(b"\n")[:-1]  # the part after the last \n is torn or empty
        for number, line in enumerate(lines, 1):
            if line.strip():
                cycles.append(_decode_object(line, f"{self.path / CYCLES_FILE}, line {number}"))
        return cycles

    def trace_names(self) -> list[str]:
        """The names of the saved traces, sorted."""
        folder = self._existing() / TRACES_DIR
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and _ID.fullmatch(p.name))

    def raw_trace(self, name: str = "trace", *, as_lists: bool = True, mmap: bool = False) -> dict[str, Any]:
        """The channels of trace ``name``: ``{channel: [float, ...]}``, or
        float64/float32 numpy arrays with ``as_lists=False`` (read-only
        memory maps of the ``.npy`` files with ``mmap=True`` too). ``{}`` if
        the trace was never saved."""
        folder = self._existing() / TRACES_DIR / check_id("trace name", name)
        if not folder.is_dir():
            return {}
        trace = {}
        for path in sorted(folder.glob("*.npy")):
            if _ID.fullmatch(path.stem):  # skips .tmp leftovers and stray files
                trace[path.stem] = _load_channel(path, as_lists, mmap)
        return trace

    def raw_data(self, *, as_lists: bool = True, mmap: bool = False) -> dict[str, dict[str, Any]]:
        """Every trace: ``{trace_name: {channel: [float, ...]}}``."""
        return {name: self.raw_trace(name, as_lists=as_lists, mmap=mmap) for name in self.trace_names()}

    def ctx(
        self, custom_params: Mapping[str, Any] | None = None, *, as_lists: bool = True, mmap: bool = False
    ) -> dict[str, Any]:
        """The ``ctx`` dict an analysis function receives.

        AutoCore's keys, in its order: ``project``, ``configuration``,
        ``results``, ``cycle_history``, ``raw_data``, ``run_id``,
        ``custom_params``; then ``project_id`` and ``definition_id``.
        Raises ``RunNotFound``, ``CorruptData`` or ``OSError``.
        """
        self._existing()
        return {
            "project": self.project(),
            "configuration": self.configuration(),
            "results": self.results(),
            "cycle_history": self.cycle_history(),
            "raw_data": self.raw_data(as_lists=as_lists, mmap=mmap),
            "run_id": self.run_id,
            "custom_params": dict(custom_params or {}),
            "project_id": self.project_id,
            "definition_id": self.definition_id,
        }

    def _existing(self) -> Path:
        if not self.path.is_dir():
            raise RunNotFound(
                f"run folder {self.path} does not exist: the control program must save the run's data "
                "(project, configuration, traces) before it requests the analysis, with these same ids"
            )
        return self.path

    def _read_bytes(self, name: str) -> bytes | None:
        try:
            return (self._existing() / name).read_bytes()
        except FileNotFoundError:
            return None

    def _read_object(self, name: str) -> dict[str, Any]:
        data = self._read_bytes(name)
        return {} if data is None else _decode_object(data, str(self.path / name))


def _decode_object(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object from ``data``, or ``CorruptData`` naming ``where``."""
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a string is the latter
        raise CorruptData(f"{where}: not valid JSON ({e}); rewrite it or remove it") from None
    except RecursionError:  # msgspec's depth is Python's recursion limit (1000 frames in all)
        raise CorruptData(f"{where}: nested too deeply to be read (arrays or objects inside each other "
                          f"about {sys.getrecursionlimit()} levels deep); flatten it") from None
    if not isinstance(value, dict):
        raise CorruptData(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def _channel_array(trace: str, channel: str, data: Any) -> np.ndarray:
    import numpy as np  # only for traces: an analysis child without any skips its import

    array = np.asarray(data)
    if array.ndim != 1:
        raise ValueError(f"channel {channel!r} of trace {trace!r} must be 1-D, got shape {array.shape}")
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "iub":
        return array.astype(np.float64)
    raise ValueError(f"channel {channel!r} of trace {trace!r} must hold numbers, got dtype {array.dtype}")


def _load_channel(path: Path, as_lists: bool, mmap: bool = False) -> Any:
    import numpy as np

    try:
        # Never unpickle: a trace is numbers only. A map is read-only: the saved trace cannot change.
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap and not as_lists else None)
    except (ValueError, EOFError) as e:
        raise CorruptData(f"{path}: not a readable .npy array ({e})") from None
    if array.ndim != 1 or array.dtype.kind not in "fiub":
        raise CorruptData(f"{path}: expected a 1-D numeric array, found shape {array.shape} dtype {array.dtype}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    return array.tolist() if as_lists else array
