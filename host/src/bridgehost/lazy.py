"""Package attributes imported on first use (PEP 562,
https://peps.python.org/pep-0562/), so that loading a plugin for the
command line does not import its runtime (messaging, EPICS, numpy)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports
    ``exports[name]`` (a module path) when ``package.name`` is first read.
    Raises ``AttributeError`` for a name not in ``exports``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
