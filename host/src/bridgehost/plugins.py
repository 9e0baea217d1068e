"""Loading plugins from entry points into a pluggy PluginManager.

Plugins are modules exposed in the entry-point group ``bridgehost``. Each is
imported on its own: one that fails to import (or whose hookimpls do not
match the hookspecs, or whose ``register_*`` hook raises) is recorded as a
``PluginFailure`` and the others load regardless. A plugin adds hooks of its
own with ``add_hookspecs``, as pytest's ``pytest_addhooks``
(https://docs.pytest.org/en/stable/how-to/writing_hook_functions.html).
Selecting a kind that a broken plugin would have provided raises an error
chained to its exception (see ``Registry.get``).

Which plugins load: ``BRIDGEHOST_LOAD_PLUGINS`` (comma-separated allow-list,
as llm's ``LLM_LOAD_PLUGINS``) and ``BRIDGEHOST_DISABLE_PLUGINS`` (block-list)
from the environment; failing those, ``[plugins] load`` and ``disable`` from
the config. The built-in plugin (``builtin``: the ``callable`` task kind)
always loads.
"""

from __future__ import annotations

import difflib
import logging
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from bridgehost import hookspecs
from bridgehost.commands import CommandRegistry
from bridgehost.errors import ConfigError
from bridgehost.imports import import_object  # noqa: F401 -- re-exported: plugins import it from here
from bridgehost.registry import CATALOG_ATTRIBUTE, Catalog, CatalogSpec, Kind, PluginFailure, Registry, SkippedPlugin

T = TypeVar("T")

ENTRY_POINT_GROUP = "bridgehost"
LOAD_ENV = "BRIDGEHOST_LOAD_PLUGINS"
DISABLE_ENV = "BRIDGEHOST_DISABLE_PLUGINS"
BUILTIN = "builtin"
LIFECYCLE_HOOKS = ("host_started", "job_started", "job_event", "job_finished", "host_stopping")

log = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    """What ``bridgehost plugins`` shows of one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    kinds: dict[str, list[str]] = field(default_factory=dict)
    """Registered names by kind, e.g. ``{"task": ["analysis"]}``."""
    error: str | None = None
    """``"ImportError: ..."`` when the plugin failed to load."""


@dataclass
class Plugins:
    """The loaded plugins: the pluggy manager, one registry per kind, the
    failures, and what to show of each plugin."""

    pm: pluggy.PluginManager
    registries: dict[Kind, Registry]
    failures: dict[str, PluginFailure]
    infos: dict[str, PluginInfo]
    catalogs: dict[str, Catalog[Any]] = field(default_factory=dict)
    """The catalogs plugins declared (``CatalogSpec``), by hook name."""
    commands: CommandRegistry = field(default_factory=CommandRegistry)
    """The ``bridgehost`` sub-commands plugins added (``register_commands``)."""
    skipped: dict[str, SkippedPlugin] = field(default_factory=dict)
    """Installed plugins not loaded, by name, with the setting that left them out."""
    unknown: dict[str, list[str]] = field(default_factory=dict)
    """Names in an allow- or block-list (by setting: ``"[plugins] load"``,
    ``BRIDGEHOST_DISABLE_PLUGINS`` ...) that no installed plugin has."""
    installed: list[str] = field(default_factory=list)
    """Every installed plugin name, loaded or not."""

    def check_names(self, source: str) -> None:
        """Raise ``ConfigError`` for the first setting that names a plugin
        that is not installed (a typo would otherwise load, or disable,
        nothing, silently); the message lists the installed names."""
        for setting, names in self.unknown.items():
            key = "plugins." + setting.split()[-1] if setting.startswith("[") else setting
            raise ConfigError(
                source,
                key,
                f"no installed plugin is named {', '.join(map(repr, names))}",
                f"installed plugins: {', '.join(self.installed)} (`bridgehost plugins` lists them)",
            )

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def registry(self, kind: Kind) -> Registry:
        return self.registries[kind]

    def catalog(self, spec: CatalogSpec[T]) -> Catalog[T]:
        """The catalog ``spec`` declares, filled by every loaded plugin; an
        empty one if the plugin that adds its hookspec did not load."""
        found = self.catalogs.get(spec.hook)
        if found is None or found.spec is not spec:
            return Catalog(spec, self.failures, self.skipped)
        return found


def _names_from_env(var: str) -> list[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


def load_plugins(
    *,
    load: list[str] | None = None,
    disable: list[str] | None = None,
    extra: list[tuple[str, ModuleType | object]] | None = None,
    kinds: Iterable[Kind] = tuple(Kind),
) -> Plugins:
    """Import the plugins of the ``bridgehost`` entry-point group and fill
    the registries and catalogs.

    ``load``/``disable`` are the config's allow- and block-lists; the
    environment variables override them. ``extra`` adds plugin modules that
    are not installed as distributions (tests, embedding), as (name, plugin):
    a module or any object with hookimpl-marked methods, as pluggy allows.
    ``kinds`` limits which registries are filled: the CLI fills none before
    it parses argv, so ``bridgehost --help`` imports no component's code.
    Commands (``register_commands``) are always collected. Never raises
    for a broken plugin: see ``Plugins.failures``.

    In three passes, as pytest loads its plugins: import every plugin; let
    each add its hookspecs (``add_hookspecs``), so every hook is known
    before any hookimpl is checked, whatever order plugins load in; then
    register each plugin, checking its hookimpls against the hookspecs. A
    plugin that fails any pass (an import error, a hookimpl that matches no
    hook or takes other arguments, a ``register_*`` hook that raises) is
    recorded and provides nothing.
    """
    env_load, env_disable = _names_from_env(LOAD_ENV), _names_from_env(DISABLE_ENV)
    allow = env_load if env_load is not None else load
    block = set(env_disable if env_disable is not None else (disable or []))
    allowed_by = LOAD_ENV if env_load is not None else "[plugins] load"
    blocked_by = DISABLE_ENV if env_disable is not None else "[plugins] disable"
    skipped: dict[str, SkippedPlugin] = {}
    installed = {BUILTIN, *(name for name, _ in extra or [])}

    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    failures: dict[str, PluginFailure] = {}
    infos: dict[str, PluginInfo] = {}

    from bridgehost import builtins

    infos[BUILTIN] = PluginInfo(BUILTIN, builtins.__name__, "bridgehost", _version("bridgehost"))
    candidates: list[tuple[PluginInfo, object]] = [(infos[BUILTIN], builtins)]
    for ep in _entry_points():
        installed.add(ep.name)
        if ep.name in infos or ep.name in skipped:
            continue  # the same plugin seen twice on sys.path: first one wins, as importlib does
        dist = ep.dist.name if ep.dist else None
        if ep.name in block:
            skipped[ep.name] = SkippedPlugin(ep.name, dist, f"disabled by {blocked_by}", f"remove {ep.name!r} from it")
            continue
        if allow is not None and ep.name not in allow:
            skipped[ep.name] = SkippedPlugin(ep.name, dist, f"not in {allowed_by}", f"add {ep.name!r} to it")
            continue
        info = PluginInfo(ep.name, ep.value, dist, ep.dist.version if ep.dist else None)
        infos[ep.name] = info
        try:
            candidates.append((info, ep.load()))
        except Exception as e:
            _record(failures, info, e)
    for name, plugin in extra or []:
        infos[name] = PluginInfo(name, getattr(plugin, "__name__", type(plugin).__qualname__))
        candidates.append((infos[name], plugin))

    for info, plugin in candidates:
        if pm.parse_hookimpl_opts(plugin, "add_hookspecs") is not None:
            try:
                plugin.add_hookspecs(pm=pm)  # type: ignore[attr-defined]
            except Exception as e:
                _record(failures, info, e)
    for info, plugin in candidates:
        if info.name in failures:
            continue
        try:
            pm.register(plugin, name=info.name)
            _check_hookimpls(pm, plugin)
        except Exception as e:
            _record(failures, info, e)
            if pm.get_plugin(info.name) is not None:
                pm.unregister(name=info.name)

    for hook in LIFECYCLE_HOOKS:
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if (impl.wrapper or impl.hookwrapper) and impl.plugin_name not in failures:
                error = TypeError(f"{hook} is a notification: implement it as a plain hookimpl, not a wrapper")
                _record(failures, infos[impl.plugin_name], error)
                pm.unregister(name=impl.plugin_name)

    commands = CommandRegistry()
    _fill(pm, "register_commands", "command", commands.for_plugin, commands.names, failures, infos, argname="commands")
    registries = {kind: Registry(kind, failures=failures, skipped=skipped) for kind in Kind}
    wanted = set(kinds)
    for kind, registry in registries.items():
        if kind in wanted:
            _fill(pm, kind.hook, kind.value, registry.for_plugin, registry.names, failures, infos)
    catalogs: dict[str, Catalog[Any]] = {}
    for caller in list(vars(pm.hook).values()):
        spec = getattr(caller.spec.function, CATALOG_ATTRIBUTE, None) if getattr(caller, "spec", None) else None
        if isinstance(spec, CatalogSpec):
            catalog = catalogs[caller.name] = Catalog(spec, failures, skipped)
            _fill(pm, caller.name, spec.what, catalog.for_plugin, catalog.names, failures, infos)
    # A broken plugin provides nothing: not what it half-registered before
    # raising, nor what it registered for earlier kinds.
    entry_maps: list[dict[str, Any]] = [commands.commands, *(r.entries for r in registries.values())]
    for entries in entry_maps:
        for name in [n for n, e in entries.items() if e.plugin in failures]:
            del entries[name]
    for catalog in catalogs.values():
        for plugin_name in failures:
            catalog.remove_plugin(plugin_name)
    for info in infos.values():
        if info.name in failures:
            info.kinds = {}
    unknown = {
        setting: sorted(set(names) - installed)
        for setting, names in ((allowed_by, allow or ()), (blocked_by, block))
        if set(names) - installed
    }
    return Plugins(pm, registries, failures, infos, catalogs, commands, skipped, unknown, sorted(installed))


def _check_hookimpls(pm: pluggy.PluginManager, plugin: object) -> None:
    """Raise ``PluginValidationError`` if a hookimpl of ``plugin`` matches no
    hookspec (a misspelt ``register_task``) and is not marked
    ``optionalhook=True`` (for a hook of a plugin that may not be installed).
    pluggy's ``check_pending`` does this for all plugins at once; here each
    plugin fails on its own."""
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
            known = sorted(name for name, c in vars(pm.hook).items() if getattr(c, "has_spec", None) and c.has_spec())
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"hooks: {', '.join(known)}"
            raise pluggy.PluginValidationError(
                plugin,
                f"hookimpl {caller.name!r} matches no hook ({hint}); a hook of a plugin that may be absent "
                "is marked @hookimpl(optionalhook=True)",
            )


def _fill(
    pm: pluggy.PluginManager,
    hook: str,
    label: str,
    view: Callable[[str], Any],
    names: Callable[[], list[str]],
    failures: dict[str, PluginFailure],
    infos: dict[str, PluginInfo],
    argname: str = "registry",
) -> None:
    """Call every plugin's ``hook(registry=view(plugin))`` (``argname`` names
    the argument), each on its own:
    one that raises is recorded as a failure and unregistered. What each
    adds is listed in its ``PluginInfo.kinds[label]``."""
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.plugin_name in failures:
            continue
        before = set(names())
        try:
            impl.function(**{argname: view(impl.plugin_name)})
        except Exception as e:
            _record(failures, infos[impl.plugin_name], e)
            pm.unregister(name=impl.plugin_name)
            continue
        added = sorted(set(names()) - before)
        if added:
            infos[impl.plugin_name].kinds.setdefault(label, []).extend(added)


def _record(failures: dict[str, PluginFailure], info: PluginInfo, error: Exception) -> None:
    info.error = f"{type(error).__name__}: {error}"
    failures[info.name] = PluginFailure(
        info.name, info.distribution, error, "".join(traceback.format_exception(error))
    )
    log.warning("plugin %r (%s) failed to load: %s", info.name, info.distribution or info.module, info.error)


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
