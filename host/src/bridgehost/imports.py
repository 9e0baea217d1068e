"""Resolve ``"package.module:attr"`` targets (the form of entry points,
https://packaging.python.org/en/latest/specifications/entry-points/).

A module of its own, importing nothing of the host, so that an analysis
child process can resolve a registered analysis
without the plugin manager in its zygote's memory: every module a zygote
holds is copied into the page tables of every fork.
"""

from __future__ import annotations

import importlib
from typing import Any


def import_object(target: str) -> Any:
    """Resolve ``"package.module:attr.sub"`` to the object it names.

    Raises ``ValueError`` for a malformed target and ``ImportError`` /
    ``AttributeError`` (with the target in the message) when it does not resolve.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not of the form 'package.module:function'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
