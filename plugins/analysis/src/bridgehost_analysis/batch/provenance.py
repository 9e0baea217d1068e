"""What produced a run's results: one record per run and analysis.

``bridgehost reanalyze`` writes, for every run it analyses (success or not),
``<run>/analyses/<what>.json``: the script's name, path and sha256 (or the
registered analysis's name, distribution and version), the function, the
sha256 of ``custom_params``, bridgehost's version, the UTC time, the
status, the duration, and the result itself. ``results.json`` keeps its
meaning (the results the control program reads, merged only with
``--save``); the record sits beside it. Reference: ``docs/datastore.md``,
"Provenance".

A record is written atomically and durably (``write_atomic``), after the
results were merged (``--save``): a batch killed at any moment leaves each
run either recorded with its result or not recorded, never half. The next
batch skips a run whose record has the same fingerprint (script content or
analysis version, function, parameters) and succeeded.
"""

from __future__ import annotations

import hashlib
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

import msgspec

from bridgehost_analysis.datastore import make_dirs, write_atomic

RECORDS_DIR = "analyses"
"""The folder of a run that holds its provenance records."""
_encode = msgspec.json.Encoder(order="sorted").encode


class Provenance(msgspec.Struct, kw_only=True, frozen=True):
    """What a batch runs, the same for all its runs.

    For a script: ``script`` (its name under ``scripts/``), ``script_path``
    (resolved, absolute), ``script_sha256`` (of the file's bytes). For a
    registered analysis: ``analysis`` (its name), ``distribution`` and
    ``version`` (of the distribution that registered it). ``function``:
    the function called. ``custom_params_sha256``: of ``custom_params`` as
    JSON with sorted keys and no spaces. ``bridgehost_version``: of the
    ``bridgehost`` distribution doing the batch.
    """

    function: str
    custom_params_sha256: str
    bridgehost_version: str
    script: str | None = None
    script_path: str | None = None
    script_sha256: str | None = None
    analysis: str | None = None
    distribution: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        """``script:<name>:<function>`` or ``analysis:<name>``: which
        results a record is about; one record per run and label."""
        return f"analysis:{self.analysis}" if self.analysis else f"script:{self.script}:{self.function}"

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """What must be equal for a stored result to stand for a new run."""
        return (self.label, self.script_sha256, self.distribution, self.version, self.custom_params_sha256)


class Record(msgspec.Struct, kw_only=True):
    """One run's record (``<run>/analyses/<label>.json``).

    ``status``: a ``bridgehost.Status`` name (``SUCCESS``, ``CRASH``, ...);
    ``error``: its message (empty on success); ``started_utc``: ISO 8601,
    UTC; ``duration_s``: wall time of the run, in seconds; ``saved``: the
    result was merged into ``results.json``; ``result``: the function's
    dict (``None`` unless SUCCESS).
    """

    provenance: Provenance
    status: str
    error: str = ""
    started_utc: str
    duration_s: float
    saved: bool = False
    result: msgspec.Raw = msgspec.Raw(b"null")


def params_sha256(custom_params: dict[str, Any]) -> str:
    """sha256 (hex) of ``custom_params`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(_encode(custom_params)).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_name(provenance: Provenance) -> str:
    """The file name of ``provenance``'s records: its label, percent-encoded."""
    return urllib.parse.quote(provenance.label, safe="") + ".json"


def record_path(run_path: str | os.PathLike[str], provenance: Provenance) -> str:
    """Where the record of ``provenance``'s analysis of a run is kept."""
    return os.path.join(run_path, RECORDS_DIR, record_name(provenance))


def read_record(path: str | os.PathLike[str]) -> Record | None:
    """The record at ``path``; ``None`` if there is none, it cannot be read
    (not a regular file, no permission) or it does not decode (a record from
    a future version, a file edited by hand): the run is then analysed again,
    and writing its record again succeeds or fails that run alone."""
    try:
        # O_NONBLOCK: a FIFO in the record's place must not hold the batch.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return _decode_record(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_record(path: str | os.PathLike[str], record: Record) -> None:
    """Write ``record`` atomically and durably (``write_atomic``)."""
    path = Path(path)
    make_dirs(path.parent)
    write_atomic(path, msgspec.json.encode(record))


_decode_record = msgspec.json.Decoder(Record).decode


def is_done(record: Record | None, provenance: Provenance, *, save: bool) -> bool:
    """Whether ``record`` makes running the analysis again useless: it
    succeeded with the same fingerprint, and was saved if ``save`` asks."""
    return (
        record is not None
        and record.status == "SUCCESS"
        and record.provenance.fingerprint == provenance.fingerprint
        and (record.saved or not save)
    )
