"""The ``step`` and ``sequence`` task kinds.

::

    [[tasks]]
    name = "sample.hold"
    kind = "step"
    target = "delay"                 # a registered step, "pkg.mod:fn" or "file.py:fn"
    data = { seconds = 30 }          # default data when a request gives none
    timeout_s = 3600                 # the whole job, paused time included

    [[tasks]]
    name = "sample.prep"
    kind = "sequence"
    steps = [
        "prep.py:weigh",                                   # name: "weigh"
        { step = "delay", name = "settle", data = { seconds = 5 } },
    ]

A job's params are ``{"data": ..., "point": ...}``, both optional. For a
sequence, ``data`` maps step names to data replacing the configured data,
and ``point`` is ``{"step": index or name, "point": ...}`` (where to start).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from bridgehost.config import TaskConfig
from bridgehost.errors import InvalidField, InvalidRequest, UnknownKindError
from bridgehost.registry import Catalog
from bridgehost_steps.controller import StepsController
from bridgehost_steps.hookspecs import STEPS
from bridgehost_steps.run import Run
from bridgehost_steps.run_types import Limits, ProgramStep, Refused, parse_point
from bridgehost_steps.steps import StepDef, resolve

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.jobs import Job

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class StepsConfig(TaskConfig, kw_only=True):
    """What ``step`` and ``sequence`` tasks share."""

    recovery_timeout_s: PositiveFloat = 300.0
    """How long a failed process waits for retry, skip or halt before the job
    ends with its failure (TASK_FAIL for ``ProcessFailureError``, else CRASH)."""
    halt_timeout_s: PositiveFloat = 30.0
    """How long a halted process's cleanup may run before it is abandoned
    (the job then ends HALTED, the abandonment reported)."""
    inbox_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Messages sent to a job (``steps.send``) that its process has not taken
    with ``context.receive()`` yet; one more is refused. Each is at most the
    transport's frame size, so this bounds what a sender can make a job hold."""
    control_transport: str | None = None
    """The transport that carries the ``steps.*`` control topics and
    broadcasts. Absent: the transport named ``zmq`` if one is configured,
    else none (control through the Python API only)."""


class StepTaskConfig(StepsConfig, kw_only=True):
    """``kind = "step"``: one process."""

    target: str
    """The step: a registered name, ``"package.module:function"`` or
    ``"file.py:function"`` (relative to the config file's folder)."""
    data: Any = None
    """Data when a request gives none (converted to the step's data type)."""


class SequenceEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One entry of ``steps``: ``step`` as ``target`` above; ``name`` (default:
    the function or registered name) must be unique in the sequence."""

    step: str
    name: str = ""
    data: Any = None


class SequenceTaskConfig(StepsConfig, kw_only=True):
    """``kind = "sequence"``: named steps in order."""

    steps: Annotated[list[str | SequenceEntry], msgspec.Meta(min_length=1)]


class StartParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data: Any = msgspec.UNSET
    point: Any = None


class StepsTask:
    """A ``step`` or ``sequence`` task: one ``Run`` per job."""

    kind = "sequence"

    def __init__(self, config: StepsConfig, host: Host, entries: list[tuple[str, str, str, Any]]):
        """``entries``: (key of the step reference, key of its data, reference, data)."""
        self.config = config
        self.host = host
        self.controller = StepsController.of(host)
        self.limits = Limits(config.recovery_timeout_s, config.halt_timeout_s, config.inbox_size)
        self.transport_name = _check_transport(config, host)
        registry = steps_registry(host)
        base_dir = Path(host.config.base_dir)
        self.program: list[ProgramStep] = []
        seen: dict[str, int] = {}
        for i, (key, data_key, ref, data) in enumerate(entries):
            try:
                step = resolve(ref, registry, base_dir)
            except UnknownKindError as e:
                raise InvalidField(key, e.message, e.hint) from e.__cause__
            except Exception as e:
                raise InvalidField(
                    key, f"cannot use step {ref!r}: {type(e).__name__}: {e}",
                    "give a registered step, 'package.module:function', or 'file.py:function' "
                    "(relative to the config file's folder)",
                ) from e
            name = _entry_name(config, i, ref)
            if name in seen:
                raise InvalidField(
                    f"steps[{i}].name", f"step name {name!r} is already used by steps[{seen[name]}]",
                    "give each entry a distinct name: jumps and data address steps by it",
                )
            seen[name] = i
            try:
                data = step.convert_data(data) if data is not None or step.data_type is None else None
            except ValueError as e:
                raise InvalidField(data_key, str(e)) from None
            self.program.append(ProgramStep(name, step, data))

    async def start(self) -> None:
        self.controller.acquire()
        if self.transport_name is not None:
            from bridgehost_steps.control import attach

            attach(self.controller, self.host.transports[self.transport_name])

    async def stop(self) -> None:
        await self.controller.release()

    async def run(self, job: Job) -> Any:
        program, index, point = self.prepare(job.params)
        run = Run(job, self.kind, program, limits=self.limits, sink=self.controller.sink, index=index, point=point)
        self.controller.add(run)
        try:
            return await run.execute()
        finally:
            self.controller.remove(run)

    def prepare(self, params: dict[str, Any]) -> tuple[list[ProgramStep], int, Any]:
        """The program, the starting step index and point for a job's params.
        Raises ``InvalidRequest`` naming what is wrong."""
        try:
            start = msgspec.convert(params, StartParams)
        except msgspec.ValidationError as e:
            raise InvalidRequest(f"params of a {self.kind} job are {{\"data\": ..., \"point\": ...}}: {e}") from None
        program = list(self.program)
        if start.data is not msgspec.UNSET:
            program = self._with_data(program, start.data)
        index, point = 0, start.point
        if self.kind == "sequence" and point is not None:
            try:
                index, point = parse_point(program, point)
            except Refused as e:
                raise InvalidRequest(str(e)) from None
        try:
            point = program[index].step.convert_point(point)
            for entry in program:
                if entry.data is None and entry.step.data_type is not None:
                    entry.step.convert_data(None)  # raises: this step needs data
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
        return program, index, point

    def _with_data(self, program: list[ProgramStep], data: Any) -> list[ProgramStep]:
        names = [p.name for p in program]
        if not isinstance(data, dict) or not set(data) <= set(names):
            raise InvalidRequest(
                f"data of a sequence job maps step names ({', '.join(names)}) to their data, got {data!r:.80}"
            )
        try:
            return [ProgramStep(p.name, p.step, p.step.convert_data(data[p.name])) if p.name in data else p for p in program]
        except ValueError as e:
            raise InvalidRequest(str(e)) from None


class StepTask(StepsTask):
    """``kind = "step"``."""

    kind = "step"

    def __init__(self, config: StepTaskConfig, host: Host):
        super().__init__(config, host, [("target", "data", config.target, config.data)])

    def _with_data(self, program: list[ProgramStep], data: Any) -> list[ProgramStep]:
        (entry,) = program
        try:
            return [ProgramStep(entry.name, entry.step, entry.step.convert_data(data))]
        except ValueError as e:
            raise InvalidRequest(str(e)) from None


class SequenceTask(StepsTask):
    """``kind = "sequence"``."""

    kind = "sequence"

    def __init__(self, config: SequenceTaskConfig, host: Host):
        entries = [
            (f"steps[{i}]", f"steps[{i}]", e, None)
            if isinstance(e, str)
            else (f"steps[{i}].step", f"steps[{i}].data", e.step, e.data)
            for i, e in enumerate(config.steps)
        ]
        super().__init__(config, host, entries)


def _entry_name(config: StepsConfig, index: int, ref: str) -> str:
    if isinstance(config, SequenceTaskConfig):
        entry = config.steps[index]
        if isinstance(entry, SequenceEntry) and entry.name:
            return entry.name
    return ref.rpartition(":")[2].rpartition(".")[2] or ref


def _check_transport(config: StepsConfig, host: Host) -> str | None:
    """The name of the control transport, checked against the config (the
    transports themselves are built after the tasks)."""
    names = [t.name or t.kind for t in host.config.transports]
    if config.control_transport is None:
        return "zmq" if "zmq" in names else None
    if config.control_transport not in names:
        raise InvalidField(
            "control_transport",
            f"no transport named {config.control_transport!r} (transports: {', '.join(names) or 'none'})",
            'add a [[transports]] table with kind = "zmq", or leave control_transport out',
        )
    return config.control_transport


def steps_registry(host: Host) -> Catalog[StepDef]:
    """The steps every plugin publishes through ``register_steps`` (filled
    when the host loaded its plugins)."""
    return host.plugins.catalog(STEPS)
