"""Named implementations of each kind of component, with their config types,
and named values plugins publish for another plugin's task kind.

Plugins fill one ``Registry`` per kind through the core's ``register_*``
hooks. A plugin that runs things by name (a task kind that runs named
functions) declares a ``Catalog`` for a hook of its own (``CatalogSpec``);
every plugin fills it at load time the same way. A lookup of a name nobody
registered fails the way tox 4's runner registry does
(https://tox.wiki/en/latest/plugins.html): it names what is available and
which installed distribution declares the missing one (``declared_by``),
and if that plugin is installed but broken it chains the import error.

What a distribution provides is metadata it declares about itself, read
without importing it: entry points in the group ``bridgehost.provides``
named ``<kind>.<name>`` (``task.analysis``, ``trigger.epics``,
``step.acme.purge``), each naming the plugin module that registers it, as
SQLAlchemy's ``sqlalchemy.dialects`` entry points are named
``<dialect>.<driver>``
(https://github.com/sqlalchemy/sqlalchemy/blob/main/README.dialects.rst).
The core names no plugin.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, NoReturn, TypeVar

import msgspec

from bridgehost.errors import UnknownKindError


class Kind(enum.StrEnum):
    """The kinds of component the host knows, and runnable demos."""

    TRANSPORT = "transport"
    TRIGGER = "trigger"
    TASK = "task"
    WATCHDOG = "watchdog"
    DEMO = "demo"

    @property
    def hook(self) -> str:
        """The name of the hook that fills this kind's registry."""
        return f"register_{self.value}s"

    @property
    def section(self) -> str:
        """The config array of tables that selects this kind (``[[tasks]]``)."""
        return f"{self.value}s"


PROVIDES_GROUP = "bridgehost.provides"
"""The entry-point group in which a distribution declares what it provides:
``"<kind>.<name>" = "<plugin module>"`` (docs/writing-plugins.md)."""


def declared_by(provides: str) -> list[str]:
    """The installed distributions that declare ``provides``
    (``"task.analysis"``: a ``Kind`` value or a catalog's ``what``, a dot,
    the name) in the entry-point group ``bridgehost.provides``, sorted.
    Reads their metadata only: imports nothing."""
    found = entry_points(group=PROVIDES_GROUP, name=provides)
    return sorted({ep.dist.name for ep in found if ep.dist is not None})


@dataclass(frozen=True)
class Entry:
    """One registered implementation.

    ``factory(config, host)`` builds the component from its validated config
    Struct (for demos: ``factory()`` runs the demo). ``plugin`` is the name
    of the plugin that registered it.
    """

    kind: Kind
    name: str
    factory: Callable[..., Any]
    config: type[msgspec.Struct] | None
    plugin: str
    summary: str = ""


@dataclass(frozen=True)
class SkippedPlugin:
    """An installed plugin that was not loaded, and why: ``reason`` names the
    setting (``"disabled by BRIDGEHOST_DISABLE_PLUGINS"``), ``remedy`` what
    to change to load it."""

    plugin: str
    distribution: str | None
    reason: str
    remedy: str


@dataclass
class PluginFailure:
    """A plugin that could not be imported or whose register hook raised."""

    plugin: str
    distribution: str | None
    error: BaseException
    traceback: str


@dataclass
class Registry:
    """The implementations of one kind, by name."""

    kind: Kind
    entries: dict[str, Entry] = field(default_factory=dict)
    failures: Mapping[str, PluginFailure] = field(default_factory=dict)
    """Plugins that failed to load, shared with the plugin manager."""
    skipped: Mapping[str, SkippedPlugin] = field(default_factory=dict)
    """Installed plugins that were not loaded (disabled, or not allowed), shared too."""

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        config: type[msgspec.Struct] | None = None,
        summary: str = "",
        plugin: str = "",
    ) -> None:
        """Register ``factory`` under ``name``.

        Raises ``ValueError`` for a malformed entry or if ``name`` is already
        registered by another plugin: two plugins must not silently shadow
        each other.
        """
        _check_name(self.kind.value, name, self.entries, plugin, lambda e: e.plugin)
        if self.kind is not Kind.DEMO and config is None:
            raise ValueError(f"{self.kind.value} {name!r} needs a config Struct")
        self.entries[name] = Entry(self.kind, name, factory, config, plugin, summary)

    def for_plugin(self, plugin: str) -> PluginRegistry:
        """A view whose ``add()`` records ``plugin`` as the registrant."""
        return PluginRegistry(self, plugin)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self.entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str, *, source: str = "", key: str = "") -> Entry:
        """The entry for ``name``.

        Raises ``UnknownKindError`` naming the available names and the
        installed distribution that declares ``<kind>.<name>``
        (``declared_by``); when that distribution's plugin failed to load,
        the error is chained to the plugin's own exception.
        """
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        what = self.kind.value if self.kind is Kind.DEMO else f"{self.kind.value} kind"
        raise_unknown(what, name, self.names(), f"{self.kind.value}.{name}", self.failures,
                      source=source, key=key, skipped=self.skipped)


@dataclass(frozen=True)
class PluginRegistry:
    """What a ``register_*`` hook receives: the registry of its kind, with
    the calling plugin recorded on every entry it adds."""

    registry: Registry
    plugin: str

    @property
    def kind(self) -> Kind:
        return self.registry.kind

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        config: type[msgspec.Struct] | None = None,
        summary: str = "",
    ) -> None:
        """Register ``factory`` under ``name`` (see ``Registry.add``)."""
        self.registry.add(name, factory, config=config, summary=summary, plugin=self.plugin)


def _check_name(what: str, name: object, taken: Mapping[str, Any], plugin: str, owner: Callable[[Any], str]) -> None:
    """Raise ``ValueError`` if ``name`` is not a non-empty string or another
    plugin already registered it."""
    if not name or not isinstance(name, str):
        raise ValueError(f"{what} name must be a non-empty string, got {name!r}")
    if name in taken:
        raise ValueError(
            f"{what} {name!r} is registered twice: by plugin {owner(taken[name])!r} "
            f"and by plugin {plugin!r}; disable one of them"
        )


def raise_unknown(
    what: str,
    name: str,
    available: list[str],
    provides: str,
    failures: Mapping[str, PluginFailure],
    *,
    source: str = "",
    key: str = "",
    skipped: Mapping[str, SkippedPlugin] | None = None,
) -> NoReturn:
    """Raise ``UnknownKindError`` for ``name``, which no loaded plugin
    registered: ``"<what> 'name' is not available (available: ...)"``, with a
    hint naming the installed distribution that declares ``provides``
    (``"task.analysis"``, see ``declared_by``). When its plugin was not
    loaded (``skipped``) the hint says which setting left it out and what to
    change; when it failed to load, the error is chained to the plugin's own
    exception. When no installed distribution declares it, the hint says to
    find and install one, and the error is chained to the only plugin that
    failed to load, if there is one (it may be the provider)."""
    message = f"{what} {name!r} is not available (available: {', '.join(available) or 'none'})"
    cause: BaseException | None = None
    providers = declared_by(provides)
    broken = [f for f in failures.values() if f.distribution in providers]
    unloaded = [s for s in (skipped or {}).values() if s.distribution in providers]
    if unloaded:
        off = unloaded[0]
        hint = f"{off.distribution} is installed but its plugin {off.plugin!r} is {off.reason}: {off.remedy}"
    elif broken:
        cause = broken[0].error
        hint = (
            f"{broken[0].distribution} is installed but its plugin {broken[0].plugin!r} failed to load: "
            f"{type(cause).__name__}: {cause}; run `bridgehost plugins` for the traceback"
        )
    elif providers:
        hint = (
            f"{' and '.join(providers)} {'declares' if len(providers) == 1 else 'declare'} {provides!r} "
            f"({PROVIDES_GROUP} entry point) but no loaded plugin registered it; "
            "`bridgehost plugins` lists what each plugin registered"
        )
    else:
        hint = (
            f"no installed distribution provides it (none declares {provides!r} in the entry-point group "
            f"{PROVIDES_GROUP!r}): find a plugin that provides it and install it next to bridgehost "
            "(docs/writing-plugins.md); `bridgehost plugins` lists what is installed"
        )
        if len(failures) == 1:
            only = next(iter(failures.values()))
            cause = only.error
            hint += f"; plugin {only.plugin!r} failed to load and may provide it"
    error = UnknownKindError(source, key, message, hint)
    if cause is not None:
        raise error from cause
    raise error


T = TypeVar("T")


@dataclass(frozen=True)
class CatalogSpec(Generic[T]):
    """Declares a ``Catalog``: what a plugin's own ``register_*`` hook fills.

    ``what`` names one entry in messages (``"recipe"``);
    ``make(name, value, **options) -> T`` turns what a plugin passes to
    ``add()`` into the stored entry, raising ``ValueError`` or ``TypeError``
    for a bad one. A distribution that publishes entries declares each
    as ``<what>.<name>`` in ``bridgehost.provides`` (for the not-available
    hint, see ``declared_by``). Decorate the hookspec
    with ``hookspec``; the plugin manager then calls every plugin's hookimpl
    at load time, each with a ``PluginCatalog`` recording it, and a plugin
    whose hookimpl raises is a recorded failure that provides nothing::

        RECIPES = CatalogSpec("recipe", make=Recipe)

        @RECIPES.hookspec
        def register_recipes(registry: PluginCatalog[Recipe]) -> None: ...

    The owning plugin adds the hookspec module in its ``add_hookspecs`` and
    reads the filled catalog with ``host.plugins.catalog(RECIPES)``.
    """

    what: str
    make: Callable[..., T]
    hook: str = ""
    """The hook's name; set by ``hookspec``."""

    def hookspec(self, function: Callable[..., None]) -> Callable[..., None]:
        """Mark ``function`` as the bridgehost hookspec that fills this catalog."""
        from bridgehost.hookspecs import hookspec

        object.__setattr__(self, "hook", function.__name__)
        setattr(function, CATALOG_ATTRIBUTE, self)
        return hookspec(function)


CATALOG_ATTRIBUTE = "bridgehost_catalog"
"""The attribute of a hookspec function that holds its ``CatalogSpec``."""


class Catalog(Generic[T]):
    """Named values published by plugins through one hook (``CatalogSpec``),
    by name, each with the plugin that published it."""

    def __init__(
        self,
        spec: CatalogSpec[T],
        failures: Mapping[str, PluginFailure] | None = None,
        skipped: Mapping[str, SkippedPlugin] | None = None,
    ):
        self.spec = spec
        self.entries: dict[str, T] = {}
        self.owners: dict[str, str] = {}
        """The plugin that published each name."""
        self.failures: Mapping[str, PluginFailure] = failures if failures is not None else {}
        """Plugins that failed to load, shared with the plugin manager."""
        self.skipped: Mapping[str, SkippedPlugin] = skipped if skipped is not None else {}
        """Installed plugins that were not loaded, shared too."""

    def add(self, name: str, value: Any, /, *, plugin: str = "", **options: Any) -> None:
        """Publish ``spec.make(name, value, **options)`` as ``name``. Raises
        ``ValueError`` if another plugin published ``name``, and what
        ``make`` raises for a bad value."""
        _check_name(self.spec.what, name, self.owners, plugin, str)
        self.entries[name] = self.spec.make(name, value, **options)
        self.owners[name] = plugin

    def for_plugin(self, plugin: str) -> PluginCatalog[T]:
        """A view whose ``add()`` records ``plugin`` as the publisher."""
        return PluginCatalog(self, plugin)

    def remove_plugin(self, plugin: str) -> None:
        """Drop what ``plugin`` published (it failed to load)."""
        for name in [n for n, owner in self.owners.items() if owner == plugin]:
            del self.entries[name], self.owners[name]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[T]:
        return iter([self.entries[n] for n in self.names()])

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str, *, source: str = "", key: str = "") -> T:
        """The entry published as ``name``. Raises ``UnknownKindError`` as
        ``Registry.get`` does (available names, the distribution that
        declares ``<what>.<name>``, chained failure)."""
        if name in self.entries:
            return self.entries[name]
        raise_unknown(self.spec.what, name, self.names(), f"{self.spec.what}.{name}", self.failures,
                      source=source, key=key, skipped=self.skipped)


@dataclass(frozen=True)
class PluginCatalog(Generic[T]):
    """What a catalog hook (one a ``CatalogSpec`` declares) receives:
    ``add(name, value, **options)`` publishes with the calling plugin
    recorded."""

    catalog: Catalog[T]
    plugin: str

    def add(self, name: str, value: Any, /, **options: Any) -> None:
        """Publish ``value`` as ``name`` (see ``Catalog.add``)."""
        self.catalog.add(name, value, plugin=self.plugin, **options)
