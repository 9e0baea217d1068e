"""Step definitions: a process callable with its data and point types, found
by ``module:function``, by ``file.py:function`` or by a registered name.

A process is an async callable taking ``(data, context)`` or ``(context)``
(both forms appear in Automancer's process API, https://github.com/slietar/automancer). Its data and points
arrive as JSON; to get objects (Automancer's ``data.value``,
``e.point.index``), declare types::

    from bridgehost_steps import step

    class Pulse(msgspec.Struct):
        value: float            # seconds

    @step(data=Pulse, summary="hold for data.value seconds")
    async def hold(data, context): ...

Third parties publish steps by name with the ``register_steps`` hook (see
``bridgehost_steps.hookspecs``).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bridgehost.plugins import import_object
from bridgehost.registry import Catalog

ATTRIBUTE = "__bridgehost_step__"


@dataclass(frozen=True)
class StepDef:
    """A process and how to call it.

    ``wants_data``: whether it takes ``(data, context)`` (else ``(context)``).
    ``data_type`` / ``point_type``: what JSON data and points are converted to
    with ``msgspec.convert`` (None: plain JSON values).
    """

    name: str
    process: Callable[..., Any]
    wants_data: bool
    data_type: Any = None
    point_type: Any = None
    summary: str = ""

    def convert_data(self, value: Any) -> Any:
        """``value`` as this step's data type. Raises ``ValueError`` naming what is wrong."""
        return _convert(value, self.data_type, f"data of step {self.name!r}")

    def convert_point(self, value: Any) -> Any:
        """``value`` (None: the start) as this step's point type. Raises ``ValueError``."""
        if value is None:
            return None
        return _convert(value, self.point_type, f"point of step {self.name!r}")

    def call(self, data: Any, context: Any) -> Any:
        return self.process(data, context) if self.wants_data else self.process(context)


def _convert(value: Any, type_: Any, what: str) -> Any:
    if type_ is None:
        return value
    if isinstance(type_, type) and isinstance(value, type_):
        return value
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as e:
        raise ValueError(f"{what}: {e}") from None


def step(
    process: Callable[..., Any] | None = None, *, data: Any = None, point: Any = None, summary: str = ""
) -> Any:
    """Declare a process's data and point types (decorator; ``@step`` alone is fine).

    ``data`` / ``point``: types ``msgspec.convert`` accepts (a Struct, a
    dataclass, ``int``...). Returns the function unchanged, marked.
    """

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, ATTRIBUTE, {"data": data, "point": point, "summary": summary})
        return fn

    return mark(process) if process is not None else mark


def define(name: str, process: Callable[..., Any], *, data: Any = None, point: Any = None, summary: str = "") -> StepDef:
    """A ``StepDef`` for ``process``; types given here win over ``@step`` ones.

    Raises ``TypeError`` if ``process`` is not callable or does not take one
    (context) or two (data, context) positional arguments.
    """
    if not callable(process):
        raise TypeError(f"step {name!r}: {process!r} is not callable")
    marks = getattr(process, ATTRIBUTE, {})
    try:
        params = list(inspect.signature(process).parameters.values())
    except (TypeError, ValueError):
        params = []
    required = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(required) not in (1, 2):
        raise TypeError(
            f"step {name!r}: a process takes (context) or (data, context); "
            f"{getattr(process, '__qualname__', process)!r} takes {len(required)} required argument(s)"
        )
    return StepDef(
        name=name,
        process=process,
        wants_data=len(required) == 2,
        data_type=data if data is not None else marks.get("data"),
        point_type=point if point is not None else marks.get("point"),
        summary=summary or marks.get("summary") or "",
    )


def named_step(
    name: str, process: Callable[..., Any], *, data: Any = None, point: Any = None, summary: str = ""
) -> StepDef:
    """The ``StepDef`` a ``register_steps`` hook publishes with
    ``registry.add(name, process, data=..., point=..., summary=...)``.
    Raises ``ValueError`` if ``name`` contains ':' (reserved for
    ``module:function``) and ``TypeError`` as ``define`` does."""
    if ":" in name:
        raise ValueError(f"step name {name!r} must contain no ':' (reserved for 'module:function')")
    return define(name, process, data=data, point=point, summary=summary)


def resolve(ref: str, registry: Catalog[StepDef], base_dir: Path) -> StepDef:
    """The step ``ref`` names.

    ``ref`` is a name published through ``register_steps`` (``"delay"``), ``"package.module:function"``,
    or ``"file.py:function"`` (a path relative to ``base_dir``, the config's
    folder). Raises ``bridgehost.errors.UnknownKindError`` for a name no
    plugin published (the catalog's own error, as for a named analysis:
    the published names, and the distribution that declares it if its
    plugin did not load), ``ImportError`` / ``AttributeError`` /
    ``FileNotFoundError`` (does not resolve) or ``TypeError`` (not a process).
    """
    if ":" not in ref:
        return registry.get(ref)
    module, _, attr = ref.partition(":")
    if module.endswith(".py"):
        obj: Any = _load_file(base_dir / module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    else:
        obj = import_object(ref)
    return define(ref, obj)


def _load_file(path: Path) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    # One module object per file: two steps from one file share its globals.
    name = f"bridgehost_steps_file_{abs(hash(str(path))):x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
