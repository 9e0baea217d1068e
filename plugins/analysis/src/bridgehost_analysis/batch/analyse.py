"""One run of a batch, exactly as the ``analysis`` task runs it online.

``Analyser`` holds one or more ``AnalysisTask`` objects (each with its own
zygote) built from the batch's ``AnalysisTaskConfig``, and runs a run
through ``AnalysisTask.run``: the same request checks, the same fresh
process forked from a zygote, the same limits, containment, result checks
and statuses, and ``save_results`` for ``--save``. It then writes the run's
provenance record (``bridgehost_analysis.batch.provenance``) and returns
the ``Row`` of the batch's output. The local executor and each Dask worker
run an ``Analyser``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec

from bridgehost.errors import JobError
from bridgehost.jobs import Job, Request, Status
from bridgehost.registry import Catalog, CatalogSpec
from bridgehost_analysis.batch.provenance import RECORDS_DIR, Provenance, Record, record_name, write_record
from bridgehost_analysis.batch.selection import RunKey
from bridgehost_analysis.runner import ZygoteFailed
from bridgehost_analysis.task import AnalysisTask, AnalysisTaskConfig

if TYPE_CHECKING:
    from bridgehost.host import Host

log = logging.getLogger(__name__)


class Plan(msgspec.Struct, kw_only=True, frozen=True):
    """What every run of a batch does; sent once to each Dask worker.

    ``task``: the analysis task's config (datastore, what to run, limits,
    ``save_results``, ``timeout_s``); ``provenance``: recorded with each run;
    ``custom_params``: passed to every run.
    """

    task: AnalysisTaskConfig
    provenance: Provenance
    custom_params: dict[str, Any] = {}


class Row(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of a batch's output: the run, how it ended, the function's dict.

    ``status``: a ``bridgehost.Status`` name; ``duration_s``: wall time of
    the run (of the stored run for a skipped one); ``error``: the error
    message (empty on success); ``skipped``: the run was already analysed
    (its stored record is reported); ``result``: the dict, as JSON bytes.
    """

    run: str
    status: str
    duration_s: float = 0.0
    error: str = ""
    skipped: bool = False
    result: msgspec.Raw = msgspec.Raw(b"null")


def row_of(key: RunKey | str, record: Record, *, skipped: bool) -> Row:
    return Row(
        run=str(key),
        status=record.status,
        duration_s=record.duration_s,
        error=record.error,
        skipped=skipped,
        result=record.result,
    )


class _NoPlugins:
    """No plugin loaded: an empty catalog of registered analyses (a batch of a
    script needs none, and loading every plugin costs a second)."""

    def catalog(self, spec: CatalogSpec[Any]) -> Catalog[Any]:
        return Catalog(spec)


@dataclass
class _Host:
    """What ``AnalysisTask`` uses of a ``Host``: ``path`` (the batch's
    datastore path is absolute already) and ``plugins`` (registered analyses)."""

    plugins: Any

    def path(self, value: str | os.PathLike[str]) -> Path:
        return Path(value).expanduser()


class Analyser:
    """Runs runs of one ``Plan``: ``zygotes`` analysis tasks (one zygote
    each; a zygote forks serially, so more than one spreads that work over
    the cores), ``start``ed before and ``stop``ped after.

    Raises ``InvalidField`` when the plan names an analysis no installed
    plugin registers, or a script that is not in ``scripts/``.
    """

    def __init__(self, plan: Plan, plugins: Any, *, zygotes: int = 1):
        self.plan = plan
        host = cast("Host", _Host(plugins if plugins is not None else _NoPlugins()))
        # No warm-up in waiting children (``Limits.warm``): a batch takes them at once.
        self.tasks = [AnalysisTask(plan.task, host, warm_children=False) for _ in range(max(1, zygotes))]
        for task in self.tasks:
            task.saved_limit_setting = "--max-saved-results-mb"
        self.results = str(self.tasks[0].store.results_dir)
        self.record_name = record_name(plan.provenance)

    async def start(self) -> None:
        """Start every zygote; raises ``ZygoteFailed`` if one cannot start."""
        await asyncio.gather(*(t.start() for t in self.tasks))

    async def stop(self) -> None:
        await asyncio.gather(*(t.stop() for t in self.tasks), return_exceptions=True)

    async def analyse(self, key: RunKey, slot: int = 0) -> Row:
        """Run ``key`` on zygote ``slot`` (modulo their number), record it,
        return its row. A failed run is a row, never an exception;
        cancellation kills the run's processes and records nothing."""
        record = await self.run(key, slot)
        # A thread: the record's fsyncs must not hold the event loop.
        return await asyncio.to_thread(self.record, key, record)

    async def run(self, key: RunKey, slot: int = 0) -> Record:
        """Run ``key`` on zygote ``slot``; its record, not yet written."""
        task = self.tasks[slot % len(self.tasks)]
        config = self.plan.task
        job = Job(Request(
            task="reanalyze",
            params={"project_id": key.project_id, "definition_id": key.definition_id, "run_id": key.run_id,
                    "custom_params": self.plan.custom_params},
            source="reanalyze",
            ref=str(key),
        ))
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        result: Any = None
        try:
            result = await asyncio.wait_for(task.run(job), config.timeout_s)
            status, error = Status.SUCCESS, ""
        except JobError as e:
            status, error = e.status, str(e)
            result = e.data.get("result") if status is Status.IO_FAILURE else None  # a failed save keeps it
        except TimeoutError:
            status = Status.TIMEOUT
            error = f"the run took longer than its timeout ({config.timeout_s} s) and was killed with its processes"
        except ZygoteFailed as e:  # twice in a row: the next run starts a new zygote again
            status, error = Status.CRASH, f"the analysis zygote failed: {e}"
        except Exception as e:  # a bug of bridgehost on this run's files: this run's row, never the batch's end
            log.exception("run %s failed in bridgehost", key)
            status, error = Status.CRASH, f"bridgehost failed on this run ({type(e).__name__}: {e}); please report it"
        return Record(
            provenance=self.plan.provenance,
            status=status.name,
            error=error,
            started_utc=started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            duration_s=round(time.perf_counter() - t0, 6),
            saved=config.save_results and status is Status.SUCCESS,
            result=msgspec.Raw(msgspec.json.encode(result) if status is Status.SUCCESS or result is not None else b"null"),
        )

    def record(self, key: RunKey, record: Record) -> Row:
        """Write ``record`` into the run's folder (blocking: fsyncs); its row.
        A run whose folder does not exist gets no record (nor a folder)."""
        run_path = os.path.join(self.results, *key)
        path = os.path.join(run_path, RECORDS_DIR, self.record_name)
        if os.path.isdir(run_path):
            try:
                write_record(path, record)
            except OSError as e:
                status = record.status
                record.status, record.result = Status.IO_FAILURE.name, msgspec.Raw(b"null")
                record.error = f"the run ended {status} but its record {path} could not be written: {e}"
        return row_of(key, record, skipped=False)
