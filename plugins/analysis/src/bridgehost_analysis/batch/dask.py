"""The Dask executor: a batch's runs on a Dask distributed cluster.

Each Dask worker runs one zygote, started by a ``WorkerPlugin``
(``ZygotePlugin``) when the batch registers it and stopped when the batch
unregisters it (or the worker stops); every run is a fresh process forked
from it, with the same limits, containment and result checks as an online
run (``bridgehost_analysis.batch.analyse``). The worker writes each run's
provenance record (and with ``--save`` merges its results) into the
datastore, which every worker must see at the same path.

The client submits runs in groups (one Dask task runs many short runs: the
scheduler handles some thousands of tasks per second, see
``docs/scale-out.md``), at most a few groups per worker thread in flight
(backpressure: the client never holds the whole selection), and streams the
rows back as groups complete (``distributed.as_completed``). A worker that
dies mid-group: Dask runs the group again on another worker; the client
counts each run once, when its group's result arrives.

Reference: the Dask distributed docs, "Plugins" and "Futures"
(https://distributed.dask.org/en/stable/plugins.html).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import msgspec
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from bridgehost.errors import BridgehostError
from bridgehost_analysis.batch.analyse import Analyser, Plan, Row
from bridgehost_analysis.batch.provenance import file_sha256
from bridgehost_analysis.batch.selection import RunKey
from bridgehost_analysis.protocol import ChildSpec, Limits
from bridgehost_analysis.runner import RunLeftovers, ZygoteRunner

log = logging.getLogger("bridgehost.reanalyze")
CONNECT_S = 10.0
"""How long a scheduler may take to answer."""
GROUP_S = 0.5
"""The wall time a group of runs aims at: long enough that the scheduler's
per-task cost (about a millisecond) is small beside it, short enough that
progress flows and a lost worker loses little."""
MAX_GROUP = 256
IN_FLIGHT_PER_THREAD = 2
"""Groups in flight per worker thread: one running, one queued behind it."""
_rows = msgspec.json.Decoder(list[Row]).decode


class WorkerCannotRun(BridgehostError):
    """A Dask worker cannot run the batch (it does not see the datastore,
    or sees another script); the message names the worker and the path."""


class _LoopPlugin(WorkerPlugin, abc.ABC):
    """An asyncio event loop in a thread of its own on each worker, for a
    zygote runner: ``setup`` checks that the worker sees ``datastore``,
    starts the loop and awaits ``_start()``; ``teardown`` awaits ``_stop()``
    and ends the loop. ``call(coro)`` runs a coroutine there from a Dask
    task's thread and returns its result."""

    idempotent = False

    def __init__(self, name: str, datastore: str):
        self.name = name
        self.datastore = datastore
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def setup(self, worker: Any) -> None:
        if not os.path.isdir(os.path.join(self.datastore, "results")):
            raise WorkerCannotRun(
                f"Dask worker {worker.address} cannot see the datastore {self.datastore} (no results/ folder there): "
                "every worker must see it at the same path (a shared file system)"
            )
        self._check(worker)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bh-analysis-loop", daemon=True)
        self.thread.start()
        self.call(self._start(worker))

    def teardown(self, worker: Any) -> None:
        if self.loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)
        self.loop.close()
        self.loop = None

    def call(self, coro: Any) -> Any:
        assert self.loop is not None, "the plugin is not set up"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _check(self, worker: Any) -> None:
        pass

    @abc.abstractmethod
    async def _start(self, worker: Any) -> None:
        """Start this plugin's runner on the worker's loop."""

    @abc.abstractmethod
    async def _stop(self) -> None:
        """Stop what ``_start`` started."""


class ZygotePlugin(_LoopPlugin):
    """On each worker: an ``Analyser`` (one zygote) for a batch's ``Plan``.
    ``concurrency``: runs at once on the worker (``None``: its threads)."""

    def __init__(self, plan: Plan, name: str, concurrency: int | None):
        super().__init__(name, plan.task.datastore)
        self.plan = plan
        self.concurrency = concurrency
        self.analyser: Analyser | None = None
        self.limit: asyncio.Semaphore | None = None

    def _check(self, worker: Any) -> None:
        p = self.plan.provenance
        if p.script_path is not None:
            try:
                sha = file_sha256(p.script_path)
            except OSError as e:
                raise WorkerCannotRun(f"Dask worker {worker.address} cannot read the script {p.script_path}: {e}") from None
            if sha != p.script_sha256:
                raise WorkerCannotRun(
                    f"Dask worker {worker.address} sees another {p.script_path} (sha256 {sha[:12]}..., the client's "
                    f"{p.script_sha256[:12] if p.script_sha256 else ''}...): every worker must see the same datastore"
                )

    async def _start(self, worker: Any) -> None:
        concurrency = self.concurrency or max(1, worker.state.nthreads)
        plugins = None
        if self.plan.provenance.analysis is not None:
            from bridgehost.plugins import load_plugins

            plugins = load_plugins()
        task = msgspec.structs.replace(self.plan.task, concurrency=concurrency, prefork=min(64, concurrency + 1))
        self.limit = asyncio.Semaphore(concurrency)
        self.analyser = Analyser(msgspec.structs.replace(self.plan, task=task), plugins)
        await self.analyser.start()

    async def _stop(self) -> None:
        if self.analyser is not None:
            await self.analyser.stop()

    def run_group(self, keys: list[list[str]]) -> bytes:
        """Run ``keys`` (at most ``concurrency`` at once on this worker),
        record each; their rows as JSON."""

        async def one(key: RunKey) -> Row:
            assert self.limit is not None and self.analyser is not None
            async with self.limit:
                record = await self.analyser.run(key)
            return await asyncio.to_thread(self.analyser.record, key, record)

        async def group() -> list[Row]:
            return list(await asyncio.gather(*(one(RunKey(*k)) for k in keys)))

        return msgspec.json.encode(self.call(group()))


class RunnerPlugin(_LoopPlugin):
    """On each worker: a ``ZygoteRunner`` for an online ``analysis`` task
    with ``runner = "dask"`` (``DaskRunner``)."""

    def __init__(self, name: str, datastore: str, limits: Limits, prefork: int):
        super().__init__(name, datastore)
        self.limits = limits
        self.prefork = prefork
        self.runner: ZygoteRunner | None = None

    async def _start(self, worker: Any) -> None:
        self.runner = ZygoteRunner(self.limits, prefork=self.prefork)
        await self.runner.start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()

    def run_spec(self, spec: bytes, output_kept_bytes: int, output_kill_bytes: int, deadline_s: float | None) -> RunLeftovers:
        """Run one ``ChildSpec`` (JSON); killed with its processes after
        ``deadline_s`` (the host gave up on it by then)."""

        async def run() -> RunLeftovers:
            assert self.runner is not None
            coro = self.runner.run(
                msgspec.json.decode(spec, type=ChildSpec), output_kept_bytes=output_kept_bytes, output_kill_bytes=output_kill_bytes
            )
            return await asyncio.wait_for(coro, deadline_s)

        return cast(RunLeftovers, self.call(run()))


def _plugin(name: str, kind: type[_LoopPlugin]) -> Any:
    worker = get_worker()
    plugin = worker.plugins.get(name)
    if not isinstance(plugin, kind):
        raise WorkerCannotRun(f"Dask worker {worker.address} has no {name} plugin (it failed to start: see its log)")
    return plugin


def _run_spec(name: str, spec: bytes, output_kept_bytes: int, output_kill_bytes: int, deadline_s: float | None) -> RunLeftovers:
    """The Dask task of an online run: one spec on this worker's zygote."""
    return cast(RunnerPlugin, _plugin(name, RunnerPlugin)).run_spec(spec, output_kept_bytes, output_kill_bytes, deadline_s)


def _run_group(name: str, keys: list[list[str]]) -> bytes:
    """The Dask task of a batch: a group of runs on this worker's zygote."""
    return cast(ZygotePlugin, _plugin(name, ZygotePlugin)).run_group(keys)


def _probe(address: str) -> None:
    """Fail at once (``OSError``) if nothing listens at a ``tcp://`` address:
    distributed itself retries a refused connection until its timeout."""
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_S).close()


class SchedulerUnreachable(BridgehostError):
    """No Dask scheduler answers at the address; ``hint`` says what to do."""

    hint = "check the address (tcp://HOST:8786), start one with 'dask scheduler', or use --scheduler local"


async def connect(address: str, stack: contextlib.AsyncExitStack) -> Client:
    """An asynchronous ``Client`` of the scheduler at ``address``, closed by
    ``stack``. Raises ``SchedulerUnreachable`` naming the address if it does
    not answer within ``CONNECT_S``, or is not an address."""
    try:
        await asyncio.to_thread(_probe, address)
        client = Client(address, asynchronous=True, timeout=CONNECT_S)
        await asyncio.wait_for(client, CONNECT_S + 1)
    except ValueError as e:  # not an address distributed can parse
        raise SchedulerUnreachable(f"{address!r} is not a Dask scheduler address ({e})") from None
    except (OSError, TimeoutError) as e:
        raise SchedulerUnreachable(f"the Dask scheduler at {address} did not answer within {CONNECT_S:.0f} s ({e})") from None
    stack.push_async_callback(client.close)
    return client


class DaskRunner:
    """The ``analysis`` task's runner for ``runner = "dask"``: each run goes
    to a worker of the Dask cluster at ``scheduler`` and is forked from that
    worker's zygote (``RunnerPlugin``), with the task's limits; the host
    gets the same ``RunLeftovers`` as from its own zygote and interprets
    them the same way. ``deadline_s`` (the task's ``timeout_s``, plus a
    second): the worker kills a run by then even if the host's cancellation
    does not reach it (Dask does not interrupt a running task)."""

    def __init__(self, limits: Limits, *, scheduler: str, datastore: str, prefork: int, deadline_s: float | None):
        self.limits = limits
        self.scheduler = scheduler
        self.datastore = datastore
        self.prefork = prefork
        self.deadline_s = deadline_s
        self.name = f"bridgehost-analysis-{uuid.uuid4().hex[:8]}"
        self.client: Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        """Connect and start a zygote on every worker. Raises
        ``SchedulerUnreachable`` or ``WorkerCannotRun``."""
        if self.client is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            client = await connect(self.scheduler, stack)
            await client.register_plugin(RunnerPlugin(self.name, self.datastore, self.limits, self.prefork), name=self.name)
        except BaseException:
            await stack.aclose()
            raise
        self.client, self._stack = client, stack

    async def run(self, spec: ChildSpec, *, output_kept_bytes: int, output_kill_bytes: int) -> RunLeftovers:
        await self.start()
        assert self.client is not None
        future = self.client.submit(
            _run_spec, self.name, msgspec.json.encode(spec), output_kept_bytes, output_kill_bytes, self.deadline_s, pure=False
        )
        try:
            return cast(RunLeftovers, await future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.client.cancel([future]))
            raise

    async def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.unregister_worker_plugin(self.name)
        if self._stack is not None:
            await self._stack.aclose()
        self.client, self._stack = None, None


class DaskExecutor:
    """Runs a batch on the Dask cluster at ``scheduler`` (``tcp://HOST:PORT``),
    or on a ``LocalCluster`` of worker processes on 127.0.0.1 (``local``).
    ``workers``: runs at once per Dask worker (default: its threads); with
    ``local``, also the number of worker processes (default: the CPUs)."""

    def __init__(self, plan: Plan, scheduler: str, *, workers: int | None = None):
        self.plan = plan
        self.scheduler = scheduler
        self.workers = workers
        self.name = f"bridgehost-reanalyze-{uuid.uuid4().hex[:8]}"

    async def _connect(self, stack: contextlib.AsyncExitStack) -> Client:
        from bridgehost_analysis.batch.core import BadBatch

        if self.scheduler != "local":
            try:
                return await connect(self.scheduler, stack)
            except SchedulerUnreachable as e:
                raise BadBatch("--scheduler", str(e), e.hint) from None
        cluster = await stack.enter_async_context(
            LocalCluster(
                n_workers=self.workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # Its workers log heartbeat tracebacks while it shuts down; a
                # failing worker reaches the batch as an exception anyway.
                silence_logs=logging.CRITICAL,
                asynchronous=True,
            )
        )
        return await stack.enter_async_context(Client(cluster, asynchronous=True))

    async def execute(self, keys: Iterator[RunKey], emit: Callable[[Row], None], stop: asyncio.Event) -> None:
        first = next(keys, None)  # skipped runs come first: no cluster when nothing is left to do
        if first is None:
            return
        keys = itertools.chain([first], keys)
        async with contextlib.AsyncExitStack() as stack:
            client = await self._connect(stack)
            if not client.scheduler_info().get("workers"):
                await cast(Any, client).wait_for_workers(1, timeout=30)  # a coroutine: the client is asynchronous
            await client.register_plugin(ZygotePlugin(self.plan, self.name, self.workers if self.scheduler != "local" else 1), name=self.name)
            stack.push_async_callback(self._unregister, client)
            await self._stream(client, keys, emit, stop)

    async def _unregister(self, client: Client) -> None:
        with contextlib.suppress(Exception):  # a worker that went away has nothing to stop
            await client.unregister_worker_plugin(self.name)

    async def _stream(self, client: Client, keys: Iterator[RunKey], emit: Callable[[Row], None], stop: asyncio.Event) -> None:
        groups: dict[str, tuple[Any, list[RunKey]]] = {}
        pending = as_completed(with_results=True, raise_errors=False)
        size = 1  # runs per group; grows to about GROUP_S of work once runs are timed
        durations: list[float] = []
        exhausted = False

        def threads() -> int:
            return sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()) or 1

        def submit() -> None:
            nonlocal exhausted
            limit = IN_FLIGHT_PER_THREAD * threads()
            while not exhausted and not stop.is_set() and len(groups) < limit:
                group = list(itertools.islice(keys, size))
                if not group:
                    exhausted = True
                    return
                future = client.submit(_run_group, self.name, [list(k) for k in group], pure=False, key=f"{self.name}-{uuid.uuid4().hex}")
                groups[str(future.key)] = (future, group)
                pending.add(future)

        submit()
        try:
            async for future, result in pending:
                _, group = groups.pop(str(future.key))
                if isinstance(result, BaseException):
                    if isinstance(result, WorkerCannotRun):
                        raise result
                    for key in group:
                        emit(Row(run=str(key), status="CRASH", error=f"the Dask task running it failed: {type(result).__name__}: {result}"))
                else:
                    for row in _rows(result):
                        durations.append(row.duration_s)
                        emit(row)
                    del durations[:-200]
                    mean = sum(durations) / len(durations) if durations else 0.0
                    per_thread = mean / max(1, self.workers or 1)
                    size = max(1, min(MAX_GROUP, int(GROUP_S / per_thread) if per_thread > 0 else MAX_GROUP))
                submit()
        finally:
            if groups:  # interrupted: what has not come back is left for the next batch
                with contextlib.suppress(Exception):
                    await client.cancel([future for future, _ in groups.values()])
