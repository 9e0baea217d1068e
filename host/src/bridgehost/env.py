"""Environment variables that override single keys of a config file.

For container deployments: ``BRIDGEHOST__HOST__NAME=rig-2`` sets ``[host]
name``, ``BRIDGEHOST__TASKS__0__TIMEOUT_S=30`` sets ``timeout_s`` of the
first ``[[tasks]]`` table. Precedence, highest first: command-line options,
environment variables, the file, the defaults. ``bridgehost.config`` applies
them while it validates; reference: ``docs/config.md``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect

from bridgehost.errors import ConfigError
from bridgehost.registry import Kind

COMPONENT_SECTIONS = tuple(k.section for k in (Kind.TRANSPORT, Kind.TRIGGER, Kind.TASK, Kind.WATCHDOG))
"""The config's arrays of tables, as overrides name them (``tasks``)."""

ENV_PREFIX = "BRIDGEHOST__"
"""Variables ``BRIDGEHOST__<TABLE>__<KEY>`` (``[host]``, ``[plugins]``) and
``BRIDGEHOST__<ARRAY>__<INDEX>__<KEY>`` (``[[tasks]]`` ...) override one key.
Names are case-insensitive; the double underscore separates the parts since
keys contain single ones (the convention of pydantic-settings and Dynaconf)."""


class EnvOverride(msgspec.Struct, frozen=True):
    """One ``BRIDGEHOST__...`` variable: the key it sets and its raw text."""

    var: str
    table: str
    index: int | None
    key: str
    value: str

    @property
    def path(self) -> str:
        return f"{self.table}{'' if self.index is None else f'[{self.index}]'}.{self.key}"


def env_overrides(environ: Mapping[str, str], source: str = "<environment>") -> list[EnvOverride]:
    """The config overrides among ``environ``'s variables, sorted by name.
    Raises ConfigError for a ``BRIDGEHOST__`` variable that names no table
    and key."""
    found = []
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) == 2 and parts[0] in ("host", "plugins") and parts[1]:
            found.append(EnvOverride(var, parts[0], None, parts[1], environ[var]))
        elif len(parts) == 3 and parts[0] in COMPONENT_SECTIONS and parts[1].isdigit() and parts[2]:
            found.append(EnvOverride(var, parts[0], int(parts[1]), parts[2], environ[var]))
        else:
            raise ConfigError(
                source,
                var,
                "this environment variable names no config key",
                f"use {ENV_PREFIX}<TABLE>__<KEY> for [host] and [plugins] (e.g. {ENV_PREFIX}HOST__LOG_LEVEL), "
                f"{ENV_PREFIX}<ARRAY>__<INDEX>__<KEY> for the arrays of tables (e.g. {ENV_PREFIX}TASKS__0__TIMEOUT_S), "
                "or unset it",
            )
    return found




def apply_overrides(
    table: Any, type_: type[msgspec.Struct], section: str, index: int | None, overrides: list[EnvOverride], source: str
) -> tuple[Any, dict[str, str]]:
    """``table`` with the overrides for it applied, and ``{key path: var}``.

    A value is taken as text for a string field (``str``, a ``Literal`` or
    enum of strings) and parsed as a TOML value otherwise (``30``, ``true``,
    ``["a", "b"]``), so ``NAME=123`` stays the string ``"123"``."""
    mine = [o for o in overrides if o.table == section and o.index == index]
    if not mine or not isinstance(table, dict):
        return table, {}
    info = msgspec.inspect.type_info(type_)
    assert isinstance(info, msgspec.inspect.StructType)  # a section's type is a Struct
    fields = {f.encode_name: f.type for f in info.fields}
    table = dict(table)
    env = {}
    for o in mine:
        if o.key not in fields:
            if new := getattr(type_, "renamed_keys", {}).get(o.key):
                raise ConfigError(
                    source, o.var, f"{o.path}: {renamed(o.key, new)}", f"set {o.var.upper()[: -len(o.key)]}{new.upper()} instead"
                )
            raise ConfigError(
                source, o.var, f"{o.path}: unknown key", f"this table takes: {', '.join(fields)}"
            )
        if _takes_text(fields[o.key]):
            table[o.key] = o.value
        else:
            try:
                table[o.key] = tomllib.loads(f"v = {o.value}")["v"]
            except tomllib.TOMLDecodeError:
                raise ConfigError(
                    source,
                    o.var,
                    f"{o.path}: {o.value!r} is not a TOML value",
                    'write it as in the file: 30, 2.5, true, ["a", "b"], "text"',
                ) from None
        env[o.path] = o.var
    return table, env


def _takes_text(info: Any) -> bool:
    types = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    for t in types:
        if isinstance(t, msgspec.inspect.StrType):
            return True
        if isinstance(t, msgspec.inspect.LiteralType) and all(isinstance(v, str) for v in t.values):
            return True
        if isinstance(t, msgspec.inspect.EnumType) and all(isinstance(m.value, str) for m in t.cls):
            return True
    return False


def renamed(old: str, new: str) -> str:
    """The error message for a key ``old`` that a table renamed ``new``
    (its config Struct's ``renamed_keys``)."""
    return f"{old!r} was renamed {new!r}"
