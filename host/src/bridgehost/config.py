"""TOML config -> validated msgspec Structs.

A config selects what runs::

    [host]
    name = "traction-rig"

    [[tasks]]
    name = "python.run_analysis"
    kind = "analysis"
    datastore = "./datastore"

Each ``[[transports]]``, ``[[triggers]]``, ``[[tasks]]`` and ``[[watchdogs]]``
table is validated by the config Struct its kind registered. Every error is a
``ConfigError`` naming the file, the key path (``tasks[0].timeout_s``), what
was expected and what was found. Reference: ``docs/config.md``.

Environment variables override single keys of the file (``load`` reads
them; ``parse_config`` takes them as ``environ``; ``bridgehost.env``), for
container deployments: ``BRIDGEHOST__HOST__NAME=rig-2`` sets ``[host] name``,
``BRIDGEHOST__TASKS__0__TIMEOUT_S=30`` sets ``timeout_s`` of the first
``[[tasks]]`` table. Precedence, highest first: command-line options,
environment variables, the file, the defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import msgspec
import msgspec.inspect

from bridgehost.env import COMPONENT_SECTIONS, EnvOverride, apply_overrides, env_overrides, renamed
from bridgehost.errors import ConfigError
from bridgehost.logs import LogFormat
from bridgehost.registry import Kind
from bridgehost.text import cut_middle
from bridgehost.validation import validation_issue

if TYPE_CHECKING:
    from bridgehost.plugins import Plugins

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
MAX_TIMEOUT_S = 30 * 24 * 3600.0
"""The longest ``timeout_s`` of a task: 30 days. A bound, so ``inf`` (and
``nan``) are refused: every job has a finite limit."""
MAX_CONCURRENCY = 256
"""The most jobs of one task that run at once (for an analysis, processes)."""
MAX_QUEUE_SIZE = 10_000
"""The most jobs of one task that may wait (each holds its request in memory)."""
TimeoutSeconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)]
"""A finite wall-clock limit in seconds: over 0, at most ``MAX_TIMEOUT_S``."""


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every config table: a misspelt key is an error, not ignored.

    ``renamed_keys`` maps a key a table no longer takes to the key that
    replaced it (before 1.0 keys are renamed without a transition): the
    error for the old key names the new one.
    """

    renamed_keys: ClassVar[dict[str, str]] = {}


class HostConfig(Section):
    """``[host]``: the host itself."""

    name: str = "bridgehost"
    """Shown in logs and in answers to ``host.ping``."""
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """On SIGTERM, SIGINT or SIGHUP, seconds running jobs may take to finish
    before they are cancelled."""
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "human"
    """``human`` lines, or ``json``: one JSON object per line (``bridgehost.logs``)."""
    log_file: str | None = None
    """Also log to this file (relative to the config file's folder), rotated by size."""
    log_file_max_mb: PositiveFloat = 10.0
    """Rotate ``log_file`` when it would pass this many MiB."""
    log_file_backups: NonNegativeInt = 5
    """Rotated files kept (``host.log.1`` ... ``host.log.5``)."""


class PluginsConfig(Section):
    """``[plugins]``: which installed plugins load.

    ``load`` is an allow-list of plugin (entry point) names; absent means all.
    ``disable`` is a block-list. The environment variables
    ``BRIDGEHOST_LOAD_PLUGINS`` and ``BRIDGEHOST_DISABLE_PLUGINS`` (comma
    separated) take precedence over these keys.
    """

    load: list[str] | None = None
    disable: list[str] = []


class ComponentConfig(Section):
    """Base of the four component tables; ``kind`` picks the implementation."""

    kind: str


class TransportConfig(ComponentConfig):
    """Base of a ``[[transports]]`` table. ``name`` defaults to ``kind`` and is
    how triggers refer to the transport."""

    name: str = ""


class TriggerConfig(ComponentConfig):
    """Base of a ``[[triggers]]`` table."""


class TaskConfig(ComponentConfig):
    """Base of a ``[[tasks]]`` table: what every task has.

    ``name`` is what requests ask for (e.g.
    ``python.run_analysis``). ``timeout_s`` is the wall-clock limit of one run in
    seconds (default 60, at most ``MAX_TIMEOUT_S``; ``None``, which only Python
    code can pass since TOML has no null, means no limit, unless the task's kind
    refuses it). ``concurrency`` jobs of this task run at once (1 to
    ``MAX_CONCURRENCY``); up to ``queue_size`` more wait (0 to
    ``MAX_QUEUE_SIZE``), and a request beyond that is answered BUSY. A value
    out of its bounds is a ``ConfigError`` naming the key and the bound.
    """

    name: str
    timeout_s: TimeoutSeconds | None = 60.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)] = 1
    queue_size: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUEUE_SIZE)] = 16


class WatchdogConfig(ComponentConfig):
    """Base of a ``[[watchdogs]]`` table."""


class Config(msgspec.Struct, kw_only=True):
    """A whole validated config. ``source`` is the file it came from;
    ``env`` maps each key path an environment variable set
    (``"tasks[0].timeout_s"``) to that variable's name."""

    source: str = "<config>"
    env: dict[str, str] = {}
    host: HostConfig = msgspec.field(default_factory=HostConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    transports: list[TransportConfig] = []
    triggers: list[TriggerConfig] = []
    tasks: list[TaskConfig] = []
    watchdogs: list[WatchdogConfig] = []

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config are resolved against."""
        path = Path(self.source)
        return path.parent if path.suffix else Path.cwd()


_TOP_LEVEL = {"host", "plugins", *COMPONENT_SECTIONS}


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file. Raises ConfigError (one line, naming the file) if
    it is missing, a folder, unreadable, not UTF-8 or not TOML."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found; pass the path of an existing TOML file") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a folder, not a file; pass the path of the TOML file in it") from None
    except OSError as e:
        raise ConfigError(source, "", f"cannot read it: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            source, "", f"not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"not valid TOML: {e}") from e


def read_plugins_section(raw: dict[str, Any], source: str, environ: Mapping[str, str] | None = None) -> PluginsConfig:
    """The ``[plugins]`` table alone, needed before plugins load."""
    return _section(raw.get("plugins", {}), PluginsConfig, source, "plugins", env_overrides(environ or {}, source), {})


def load_config(path: str | os.PathLike[str], plugins: Plugins) -> Config:
    """Read and validate the config file at ``path`` against the kinds
    registered by ``plugins``, with the environment's overrides. Raises ConfigError."""
    return parse_config(read_toml(path), plugins, source=str(path), environ=os.environ)


def load(path: str | os.PathLike[str]) -> tuple[Config, Plugins]:
    """Read the config file at ``path``, apply the environment's overrides,
    load the plugins its ``[plugins]`` table selects, and validate the rest
    against them. Raises ConfigError."""
    from bridgehost.plugins import load_plugins

    raw = read_toml(path)
    selection = read_plugins_section(raw, str(path), os.environ)
    plugins = load_plugins(load=selection.load, disable=selection.disable)
    plugins.check_names(str(path))
    return parse_config(raw, plugins, source=str(path), environ=os.environ), plugins


def parse_config(
    raw: dict[str, Any], plugins: Plugins, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a decoded TOML document, with the overrides of ``environ``
    (variables ``BRIDGEHOST__...``; none unless given). Raises ConfigError
    (or its subclass UnknownKindError, chained to a broken plugin's
    exception where relevant)."""
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(
                source, key, "unknown top-level table", f"the top level takes: {', '.join(sorted(_TOP_LEVEL))}"
            )
    overrides = env_overrides(environ or {}, source)
    env: dict[str, str] = {}
    host = _section(raw.get("host", {}), HostConfig, source, "host", overrides, env)
    plugins_cfg = _section(raw.get("plugins", {}), PluginsConfig, source, "plugins", overrides, env)
    sections: dict[str, list[Any]] = {}
    for kind in (Kind.TRANSPORT, Kind.TRIGGER, Kind.TASK, Kind.WATCHDOG):
        items = raw.get(kind.section, [])
        if not isinstance(items, list):
            raise ConfigError(
                source,
                kind.section,
                f"expected an array of tables ([[{kind.section}]]), found {_describe(items)}",
            )
        for o in overrides:
            if o.table == kind.section and not (isinstance(o.index, int) and o.index < len(items)):
                raise ConfigError(
                    source,
                    o.var,
                    f"{kind.section}[{o.index}] is not in the file, which has {len(items)} [[{kind.section}]] table(s)",
                    "an environment variable overrides a key of a table the file has; it cannot add a table",
                )
        converted = []
        for i, item in enumerate(items):
            key = f"{kind.section}[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(source, key, f"expected a table, found {_describe(item)}")
            kind_var = next((o for o in overrides if (o.table, o.index, o.key) == (kind.section, i, "kind")), None)
            name = kind_var.value if kind_var else item.get("kind")
            if not isinstance(name, str):
                raise ConfigError(
                    source,
                    f"{key}.kind",
                    "missing" if name is None else f"expected a string, found {_describe(name)}",
                    f"available {kind.value} kinds: {', '.join(plugins.registry(kind).names()) or 'none'}",
                )
            entry = plugins.registry(kind).get(name, source=source, key=f"{key}.kind")
            assert entry.config is not None
            converted.append(_section(item, entry.config, source, key, overrides, env))
        sections[kind.section] = converted
    config = Config(source=source, env=env, host=host, plugins=plugins_cfg, **sections)
    _check_unique(config)
    return config


def _section(
    table: Any, type_: type[msgspec.Struct], source: str, key: str, overrides: list[EnvOverride], env: dict[str, str]
) -> Any:
    """The file's ``table`` at ``key`` (``"host"``, ``"tasks[0]"``) with its
    overrides applied, validated as ``type_``; adds the keys the
    environment set to ``env``. Raises ConfigError."""
    section, _, index = key.partition("[")
    table, applied = apply_overrides(table, type_, section, int(index[:-1]) if index else None, overrides, source)
    env.update(applied)
    return _convert_env(table, type_, source, key, applied)


def _convert_env(value: Any, type_: type[msgspec.Struct], source: str, key: str, env: dict[str, str]) -> Any:
    """``_convert``, with an error about an overridden key naming its variable."""
    try:
        return _convert(value, type_, source, key, value)
    except ConfigError as e:
        var = next((v for path, v in env.items() if e.key == path or e.key.startswith(path + "[")), None)
        if var is None:
            raise
        raise ConfigError(e.source, e.key, f"{e.message} (set by the environment variable {var})", e.hint) from None


def _check_unique(config: Config) -> None:
    seen: dict[str, int] = {}
    for i, task in enumerate(config.tasks):
        if task.name in seen:
            raise ConfigError(
                config.source,
                f"tasks[{i}].name",
                f"task name {task.name!r} is already used by tasks[{seen[task.name]}]",
                "give every task a distinct name: requests select a task by it",
            )
        seen[task.name] = i
    names: dict[str, int] = {}
    for i, transport in enumerate(config.transports):
        name = transport.name or transport.kind
        if name in names:
            raise ConfigError(
                config.source,
                f"transports[{i}].name",
                f"transport name {name!r} is already used by transports[{names[name]}]",
                "set a distinct `name` on each transport of the same kind",
            )
        names[name] = i


def _convert(value: Any, type_: type[msgspec.Struct], source: str, key: str, raw: Any) -> Any:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as e:
        raise _config_error(e, type_, source, key, raw) from None


def _config_error(error: msgspec.ValidationError, type_: type, source: str, key: str, raw: Any) -> ConfigError:
    issue = validation_issue(error)
    message, path = issue.message, issue.path
    full_key = key + path
    if unknown := issue.unknown_field:
        if not path and (new := getattr(type_, "renamed_keys", {}).get(unknown)):
            return ConfigError(source, f"{full_key}.{unknown}", renamed(unknown, new), f"write {new} = ... instead")
        fields = ", ".join(f for f in getattr(type_, "__struct_fields__", ()))
        return ConfigError(source, f"{full_key}.{unknown}", "unknown key", f"check its spelling; this table takes: {fields}")
    if missing := issue.missing_field:
        return ConfigError(source, f"{full_key}.{missing}", "required key is missing")
    found = _lookup(raw, path)
    if message.startswith("Invalid enum value") and (choices := _choices(type_, path)):
        return ConfigError(source, full_key, f"expected one of {', '.join(map(repr, choices))}, found {_describe(found)}")
    expected = issue.expected
    if found is not _NOTHING:
        expected = re.sub(r", got \w+$", "", expected)
        expected += f", found {_describe(found)}"
    return ConfigError(source, full_key, expected)


def _choices(type_: type, path: str) -> tuple[Any, ...]:
    """The allowed values of the Literal or Enum field at ``path``, if it is one."""
    info: Any = msgspec.inspect.type_info(type_)
    for name, index in _PART.findall(path):
        while isinstance(info, msgspec.inspect.UnionType):  # `X | None`: follow the non-None side
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if index and isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
            info = info.item_type
        elif name and isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == name), None)
        else:
            return ()
    if isinstance(info, msgspec.inspect.LiteralType):
        return tuple(info.values)
    if isinstance(info, msgspec.inspect.EnumType):
        return tuple(m.value for m in info.cls)
    return ()


_NOTHING = object()
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _lookup(raw: Any, path: str) -> Any:
    node = raw
    for name, index in _PART.findall(path):
        try:
            node = node[int(index)] if index else node[name]
        except (KeyError, IndexError, TypeError):
            return _NOTHING
    return node


def _describe(value: Any) -> str:
    return f"{cut_middle(repr(value), 60, inline=True)} ({type(value).__name__})"
