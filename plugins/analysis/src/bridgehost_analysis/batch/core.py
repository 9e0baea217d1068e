"""``reanalyze``: every selected run of a datastore through one analysis.

The driver selects runs (``selection``), skips those whose provenance
record says they are done (``provenance``), hands the others to an executor
(the local one here, or Dask: ``bridgehost_analysis.batch.dask``), and
streams the rows that come back into the output (``output``) while showing
progress. Reference: ``docs/analysis.md``, "Re-analyse a datastore".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from bridgehost import __version__ as bridgehost_version
from bridgehost.config import MAX_CONCURRENCY
from bridgehost.errors import BridgehostError, ConfigError, UnknownKindError
from bridgehost_analysis.batch.analyse import Analyser, Plan, Row, row_of
from bridgehost_analysis.batch.output import Output, OutputError, check_output
from bridgehost_analysis.batch.provenance import (
    RECORDS_DIR,
    Provenance,
    Record,
    file_sha256,
    is_done,
    params_sha256,
    read_record,
    record_name,
)
from bridgehost_analysis.batch.selection import BadRunList, RunKey, read_run_list, scan
from bridgehost_analysis.datastore import Datastore, InvalidScript
from bridgehost_analysis.hookspecs import ANALYSES
from bridgehost_analysis.jsonvalue import NotJSONError, to_json_value
from bridgehost_analysis.runner import ZygoteFailed
from bridgehost_analysis.task import MAX_SAVED_RESULTS_BYTES, AnalysisTaskConfig, MiB, check_function

log = logging.getLogger("bridgehost.reanalyze")
GRACE_S = 5.0
"""After Ctrl-C or SIGTERM, how long runs in progress may take to finish
before they are killed (and left for the next batch)."""
RECORD_WRITERS = 8
"""Threads writing provenance records (each write waits on fsyncs)."""
PROGRESS_LOG_S = 5.0
"""How often a progress line is logged when stderr is not a terminal."""
WORKERS_PER_CPU = 64
"""The most runs at once per CPU here (``--workers``, local): each run is a
process with up to ``--memory-limit-mb`` of address space, and more than a
few per CPU only helps runs that wait on their disk. 64 per zygote is also
``MAX_PREFORK``, the children a zygote keeps waiting."""
CLUSTER_WORKERS_PER_CPU = 4
"""The most Dask worker processes per CPU with ``--scheduler local``: each
is a Python process with ``distributed`` loaded, plus its zygote, running
one run at a time."""
_OPTION_OF = {"timeout_s": "--timeout", "memory_limit_mb": "--memory-limit-mb"}
"""The command-line option of a task config key the batch sets, for messages."""


class BadBatch(ConfigError):
    """A batch that cannot start as asked (exit 2): ``key`` names the option."""

    def __init__(self, option: str, message: str, hint: str = ""):
        super().__init__("reanalyze", option, message, hint)


class BatchFailed(BridgehostError):
    """A batch that started but cannot go on (exit 1): its zygote cannot start."""


@dataclass
class Options:
    """A batch, as ``bridgehost reanalyze`` takes it (see ``docs/analysis.md``).

    ``datastore``: its root folder. What to run: ``script`` (a name under
    ``scripts/``) and ``function``, or ``analysis`` (a registered name).
    Which runs: the globs ``project``, ``definition``, ``run``, or
    ``runs_from`` (a file of ``project/definition/run`` lines).
    ``custom_params``: passed to every run; ``timeout_s``: wall-clock limit
    of one run; ``save``: merge results into ``results.json``; ``force``:
    analyse runs already done. Where: ``workers`` concurrent runs here
    (default: the CPUs), or ``scheduler`` (``tcp://host:port`` or
    ``local``: a Dask cluster). ``output``: a ``.csv``, ``.jsonl`` or
    ``.parquet`` file of one row per run. ``progress``: a bar (``True``),
    log lines (``False``), or as stderr is a terminal (``None``).
    """

    datastore: Path
    script: str | None = None
    function: str | None = None
    analysis: str | None = None
    project: str = "*"
    definition: str = "*"
    run: str = "*"
    runs_from: Path | None = None
    custom_params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0
    save: bool = False
    force: bool = False
    workers: int | None = None
    scheduler: str | None = None
    output: Path | None = None
    progress: bool | None = None
    memory_limit_mb: int = 2048
    max_saved_results_mb: int = 64
    """With ``save``: the largest ``results.json`` a merge may leave, MiB
    (the task's ``max_saved_results_bytes``)."""
    task: dict[str, Any] = field(default_factory=dict)
    """More keys of the ``analysis`` task's config (``cpu_limit_s``,
    ``raw_data``, ``preload``, ...), as in a ``[[tasks]]`` table."""


class Summary(msgspec.Struct, kw_only=True):
    """How a batch went. ``selected``: runs matched; ``ok``: analysed now
    and SUCCESS; ``failed``: analysed now and not SUCCESS, by status name;
    ``skipped``: already done (not run again); ``not_run``: left for the
    next batch (interrupted); ``wall_s``; ``runs_per_s``: runs analysed now
    per second of wall time."""

    selected: int
    ok: int = 0
    failed: dict[str, int] = {}
    skipped: int = 0
    not_run: int = 0
    wall_s: float = 0.0
    runs_per_s: float = 0.0
    interrupted: bool = False
    output: str | None = None

    @property
    def exit_code(self) -> int:
        """0: every selected run succeeded or was skipped; 1 otherwise."""
        return 1 if self.failed or self.not_run or self.interrupted else 0

    def line(self) -> str:
        failed = sum(self.failed.values())
        by = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items()))
        text = f"reanalyze: {self.ok} ok, {failed} failed" + (f" ({by})" if by else "")
        text += f", {self.skipped} skipped"
        if self.not_run:
            text += f", {self.not_run} not run (interrupted: run the same command again to carry on)"
        return text + f"; {self.wall_s:.1f} s, {self.runs_per_s:.1f} runs/s"


class Executor(Protocol):
    """Runs the keys it is given with a ``Plan``, calling ``emit(row)`` as
    each run finishes; stops taking keys once ``stop`` is set."""

    async def execute(self, keys: Iterator[RunKey], emit: Callable[[Row], None], stop: asyncio.Event) -> None: ...


class LocalExecutor:
    """``workers`` runs at once on this machine, each a fresh process forked
    from one of ``min(workers, CPUs)`` zygotes."""

    def __init__(self, plan: Plan, plugins: Any, workers: int):
        self.workers = workers
        self.zygotes = max(1, min(workers, os.cpu_count() or 1))
        per_zygote = math.ceil(workers / self.zygotes)
        task = msgspec.structs.replace(plan.task, concurrency=per_zygote, prefork=min(64, per_zygote + 1))
        self.analyser = Analyser(msgspec.structs.replace(plan, task=task), plugins, zygotes=self.zygotes)

    async def execute(self, keys: Iterator[RunKey], emit: Callable[[Row], None], stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # Records are written by threads while the next runs go: each costs
        # fsyncs (milliseconds on a disk), no CPU to speak of.
        writers = concurrent.futures.ThreadPoolExecutor(RECORD_WRITERS, thread_name_prefix="bh-record")
        writing: set[asyncio.Future[Row]] = set()
        room = asyncio.Semaphore(4 * RECORD_WRITERS)

        def written(future: asyncio.Future[Row]) -> None:
            writing.discard(future)
            room.release()
            if not future.cancelled() and future.exception() is None:
                emit(future.result())

        # The runs going on, so a run listed twice (--runs-from) is not run twice
        # at once, writing one record and results.json from two processes.
        running: dict[RunKey, asyncio.Future[Record]] = {}

        async def worker(slot: int) -> None:
            while not stop.is_set():
                key = next(keys, None)
                if key is None:
                    return
                if key in running:  # its row reports the run going on, as a skipped run its record
                    first = await asyncio.shield(running[key])
                    emit(row_of(key, first, skipped=True))
                    continue
                running[key] = loop.create_future()
                try:
                    record = await self.analyser.run(key, slot)
                    running[key].set_result(record)
                finally:
                    running.pop(key).cancel()  # a no-op once set; else wakes the waiters with CancelledError
                await room.acquire()
                future = loop.run_in_executor(writers, self.analyser.record, key, record)
                writing.add(future)
                future.add_done_callback(written)

        first = next(keys, None)  # skipped runs come first: start no zygote when nothing is left to do
        if first is None:
            return
        keys = itertools.chain([first], keys)
        try:
            await self.analyser.start()
        except ZygoteFailed as e:
            raise BatchFailed(f"the analysis zygote could not start: {e}") from None
        try:
            await asyncio.gather(*(worker(i) for i in range(self.workers)))
        finally:
            try:
                if writing:  # what finished is recorded, also when interrupted
                    await asyncio.shield(asyncio.wait(list(writing)))
            finally:
                writers.shutdown(wait=True)
                await self.analyser.stop()


@dataclass
class Batch:
    """A checked batch, ready to run: ``Batch.prepare(options)``, then ``run()``."""

    options: Options
    store: Datastore
    plan: Plan
    plugins: Any
    total: int

    @classmethod
    def prepare(cls, options: Options, plugins: Any = None) -> Batch:
        """Check everything that can be checked before a run starts: the
        datastore, what to run, the parameters, the output, and that at
        least one run matches. Raises ``BadBatch`` naming the option."""
        if plugins is None and options.analysis is not None:  # only named analyses need them
            from bridgehost.plugins import load_plugins

            plugins = load_plugins()
        root = Path(options.datastore).expanduser().resolve()
        if not root.is_dir():
            raise BadBatch("DATASTORE", f"{options.datastore} is not a folder", "give the datastore's root folder (it holds scripts/ and results/)")
        store = Datastore(root)
        if not store.results_dir.is_dir():
            raise BadBatch("DATASTORE", f"{root} has no results/ folder: it holds no run", "give the datastore's root folder")
        try:
            custom_params = to_json_value(options.custom_params, "custom_params")
        except NotJSONError as e:
            raise BadBatch("--custom-params", str(e)) from None
        if not isinstance(custom_params, dict):
            raise BadBatch("--custom-params", "must be a JSON object", "e.g. '{\"limit\": 400}'")
        provenance = _provenance(options, store, plugins, params_sha256(custom_params))
        task: dict[str, Any] = {
            "name": "reanalyze",
            "kind": "analysis",
            "datastore": str(root),
            "timeout_s": options.timeout_s,
            "save_results": options.save,
            "memory_limit_mb": options.memory_limit_mb,
            "max_saved_results_bytes": options.max_saved_results_mb * MiB,
            **options.task,
        }
        if provenance.analysis:
            task["analysis"] = provenance.analysis
        else:
            task["script"], task["function"] = provenance.script, provenance.function
        if not 1 <= options.max_saved_results_mb <= MAX_SAVED_RESULTS_BYTES // MiB:
            raise BadBatch("--max-saved-results-mb", f"{options.max_saved_results_mb} is out of range",
                           f"give 1 to {MAX_SAVED_RESULTS_BYTES // MiB} (MiB)")
        try:
            config = msgspec.convert(task, AnalysisTaskConfig)
        except msgspec.ValidationError as e:
            field = str(e).rpartition("at `$.")[2].rstrip("`")
            raise BadBatch(_OPTION_OF.get(field, "options"), str(e)) from None
        if options.output is not None:
            try:
                check_output(Path(options.output))
            except OutputError as e:
                raise BadBatch("--output", str(e)) from None
            if Path(options.output).resolve().is_relative_to(store.results_dir):
                raise BadBatch(
                    "--output", f"{options.output} is inside the datastore's results/ folder, where it could replace "
                    "a run's file (e.g. its cycle_history.jsonl)", "write the output outside results/",
                )
        if options.workers is not None:
            _check_workers(options.workers, options.scheduler)
        plan = Plan(task=config, provenance=provenance, custom_params=custom_params)
        batch = cls(options, store, plan, plugins, 0)
        try:
            batch.total = sum(1 for _ in batch.selection())
        except BadRunList as e:
            raise BadBatch("--runs-from", str(e)) from None
        except OSError as e:
            raise BadBatch("--runs-from", f"cannot read {options.runs_from}: {e.strerror}") from None
        if batch.total == 0:
            if options.runs_from is not None:
                raise BadBatch("--runs-from", f"{options.runs_from} lists no run", "one project/definition/run a line")
            raise BadBatch(
                "--project/--definition/--run",
                f"no run matched --project {options.project!r} --definition {options.definition!r} "
                f"--run {options.run!r} under {store.results_dir}",
                "check the globs (fnmatch patterns, quoted so the shell leaves them alone)",
            )
        return batch

    def selection(self) -> Iterator[RunKey]:
        """The selected runs, streamed."""
        if self.options.runs_from is not None:
            return read_run_list(self.options.runs_from)
        return scan(self.store, self.options.project, self.options.definition, self.options.run)

    def executor(self) -> Executor:
        if self.options.scheduler:
            from bridgehost_analysis.batch.dask import DaskExecutor

            return DaskExecutor(self.plan, self.options.scheduler, workers=self.options.workers)
        return LocalExecutor(self.plan, self.plugins, self.options.workers or os.cpu_count() or 1)

    def run(self) -> Summary:
        """Run the batch; return its summary. Ctrl-C and SIGTERM stop it
        cleanly (see ``GRACE_S``): the output and records hold what finished."""
        return asyncio.run(self._run())

    async def _run(self) -> Summary:
        options = self.options
        summary = Summary(selected=self.total, output=str(options.output) if options.output else None)
        failed: Counter[str] = Counter()
        try:
            output = Output(Path(options.output)) if options.output is not None else None
        except OutputError as e:
            raise BadBatch("--output", str(e)) from None
        progress = Progress(self.total, options.progress)
        stop = asyncio.Event()
        t0 = time.perf_counter()
        done = 0

        def emit(row: Row) -> None:
            nonlocal done
            done += 1
            if row.skipped:
                summary.skipped += 1
            elif row.status == "SUCCESS":
                summary.ok += 1
            else:
                failed[row.status] += 1
            if output is not None:
                output.add(row)
            progress.update(done, sum(failed.values()))

        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            summary.interrupted = True
            if signals == 1:
                progress.note(f"{signal.Signals(signum).name}: no more runs start; waiting up to {GRACE_S:.0f} s for those running")
            stop.set()
            if signals > 1:
                runner.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        runner = asyncio.ensure_future(self.executor().execute(self._pending(emit, stop), emit, stop))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([runner, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not runner.done():  # interrupted: the runs going on get a grace to finish
                await asyncio.wait([runner], timeout=GRACE_S)
                runner.cancel()
                await asyncio.wait([runner])
            if not runner.cancelled():
                runner.result()  # an executor's own failure (a zygote that cannot start) propagates
        finally:
            stopping.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            progress.close()
            summary.failed = dict(failed)
            summary.not_run = self.total - done
            summary.wall_s = round(time.perf_counter() - t0, 3)
            analysed = summary.ok + sum(failed.values())
            summary.runs_per_s = round(analysed / summary.wall_s, 1) if summary.wall_s else 0.0
            if output is not None:
                try:
                    output.finish()
                except (OSError, ValueError) as e:  # the disk is full, ...: say so, with the rows that are kept
                    raise BatchFailed(
                        f"{summary.line()}; but the output {output.path} could not be written ({e}): "
                        f"its rows are in {output.spool_path} (JSON Lines)"
                    ) from e
        return summary

    def _pending(self, emit: Callable[[Row], None], stop: asyncio.Event) -> Iterator[RunKey]:
        """The selected runs still to analyse; rows of those already done
        are emitted on the way (unless ``force``)."""
        provenance, save, force = self.plan.provenance, self.options.save, self.options.force
        results, name = str(self.store.results_dir), record_name(provenance)
        for key in self.selection():
            if stop.is_set():
                return
            if not force:
                record = read_record(os.path.join(results, *key, RECORDS_DIR, name))
                if record is not None and is_done(record, provenance, save=save):
                    emit(row_of(key, record, skipped=True))
                    continue
            yield key


def _check_workers(workers: int, scheduler: str | None) -> None:
    """Raise ``BadBatch`` naming ``--workers`` unless it is 1 to its bound:
    ``WORKERS_PER_CPU`` x the CPUs here; with ``--scheduler local``,
    ``CLUSTER_WORKERS_PER_CPU`` x the CPUs (worker processes); with a
    scheduler's address, ``MAX_CONCURRENCY`` (runs at once on one Dask
    worker's zygote, the bound of an analysis task's ``concurrency``)."""
    if workers < 1:
        raise BadBatch("--workers", f"{workers} is not a number of runs at once", "give 1 or more")
    cpus = os.cpu_count() or 1
    if not scheduler:
        bound, why = WORKERS_PER_CPU * cpus, (
            f"{WORKERS_PER_CPU} runs at once per CPU, {cpus} CPUs here: each run is a process with up to "
            "--memory-limit-mb of address space, and more than a few per CPU only helps runs waiting on their disk")
        hint = f"give at most {bound}, or spread the batch over machines with --scheduler"
    elif scheduler == "local":
        bound, why = CLUSTER_WORKERS_PER_CPU * cpus, (
            f"with --scheduler local it is the number of Dask worker processes started here, at most "
            f"{CLUSTER_WORKERS_PER_CPU} per CPU, {cpus} CPUs here")
        hint = f"give at most {bound}, or start a cluster over several machines and give its --scheduler address"
    else:
        bound, why = MAX_CONCURRENCY, (
            "with a --scheduler address it is the runs at once on each Dask worker, all forked from one zygote: "
            "at most an analysis task's concurrency")
        hint = f"give at most {bound}, or add Dask workers"
    if workers > bound:
        raise BadBatch("--workers", f"{workers} is more than {bound} ({why})", hint)


def _provenance(options: Options, store: Datastore, plugins: Any, params_hash: str) -> Provenance:
    if (options.script is None) == (options.analysis is None):
        raise BadBatch("--script/--analysis", "give --script NAME or --analysis NAME (one of them)")
    if options.analysis is not None:
        if options.function is not None:
            raise BadBatch("--function", "goes with --script; a registered analysis is one function already")
        catalog = plugins.catalog(ANALYSES)
        try:
            entry = catalog.get(options.analysis)
        except UnknownKindError as e:
            raise BadBatch("--analysis", e.message, e.hint) from None
        info = plugins.infos.get(catalog.owners[options.analysis])
        return Provenance(
            analysis=options.analysis,
            distribution=getattr(info, "distribution", None),
            version=getattr(info, "version", None),
            function=entry.target.partition(":")[2],
            custom_params_sha256=params_hash,
            bridgehost_version=bridgehost_version,
        )
    function = options.function or "calculate_results"
    check_function(function, lambda m: BadBatch("--function", m))
    assert options.script is not None
    try:
        path = store.script_path(options.script)
    except InvalidScript as e:
        raise BadBatch("--script", str(e)) from None
    return Provenance(
        script=options.script,
        script_path=str(path),
        script_sha256=file_sha256(path),
        function=function,
        custom_params_sha256=params_hash,
        bridgehost_version=bridgehost_version,
    )


class Progress:
    """A live bar (tqdm) on a terminal; otherwise a log line every
    ``PROGRESS_LOG_S`` seconds; ``show=False``: log lines even on a terminal."""

    def __init__(self, total: int, show: bool | None):
        self.total = total
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.bar = None
        if show is None:
            show = sys.stderr.isatty()
        if show:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, smoothing=0.1)

    def update(self, done: int, failed: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if (failed and self.bar.n % 50 == 0) or done == self.total:
                self.bar.set_postfix(failed=failed, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= PROGRESS_LOG_S:
            self.last = now
            rate = done / (now - self.t0)
            eta = (self.total - done) / rate if rate else float("inf")
            print(
                f"reanalyze: {done}/{self.total} runs ({100 * done / self.total:.0f} %), {failed} failed, "
                f"{rate:.1f} runs/s, ETA {eta:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    def note(self, text: str) -> None:
        (self.bar.write if self.bar is not None else lambda t: print(t, file=sys.stderr, flush=True))(f"reanalyze: {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def reanalyze(options: Options, plugins: Any = None) -> Summary:
    """Run a batch (``Batch.prepare(options).run()``); return its summary.
    Raises ``BadBatch`` for options that cannot work."""
    return Batch.prepare(options, plugins).run()
