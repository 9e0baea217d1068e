"""Named implementations of each kind of component, with their config types.

Plugins fill one ``Registry`` per kind through the ``register_*`` hooks. A
lookup of a name nobody registered fails the way tox 4's runner registry does:
it names what is available and which distribution would provide the missing
one, and if that plugin is installed but broken it chains the import error.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bridgehost.errors import UnknownKindError


class Kind(enum.StrEnum):
    """The kinds of component the host knows, runnable demos, and the named
    analysis functions plugins publish for the ``analysis`` task."""

    TRANSPORT = "transport"
    TRIGGER = "trigger"
    TASK = "task"
    WATCHDOG = "watchdog"
    DEMO = "demo"
    ANALYSIS = "analysis"

    @property
    def hook(self) -> str:
        """The name of the hook that fills this kind's registry."""
        return f"register_{'analyses' if self is Kind.ANALYSIS else self.value + 's'}"

    @property
    def by_target(self) -> bool:
        """Entries of this kind are ``"module:qualname"`` strings, imported
        only where they run (an analysis in its child process, under its
        limits), never by the host at load time."""
        return self is Kind.ANALYSIS

    @property
    def section(self) -> str:
        """The config array of tables that selects this kind (``[[tasks]]``)."""
        return f"{self.value}s"


# First-party kinds and the distribution that provides each, so a config that
# names a kind whose plugin is missing gets a `pip install` line, not a shrug.
KNOWN_PROVIDERS: dict[Kind, dict[str, str]] = {
    Kind.TRANSPORT: {"zmq": "bridgehost-ipc", "pva": "bridgehost-epics", "prometheus": "bridgehost-prometheus"},
    Kind.TRIGGER: {"zmq": "bridgehost-ipc", "epics": "bridgehost-epics"},
    Kind.TASK: {"analysis": "bridgehost-analysis", "step": "bridgehost-steps", "sequence": "bridgehost-steps"},
    Kind.WATCHDOG: {"epics-heartbeat": "bridgehost-epics"},
    Kind.DEMO: {"traction": "bridgehost-analysis", "epics": "bridgehost-epics"},
    Kind.ANALYSIS: {"traction.max_force": "bridgehost-analysis"},
}

TARGET_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
"""What an analysis entry must be: ``"package.module:function"``
(the function may be a dotted path inside the module, ``"mod:Class.method"``)."""
_TARGET = re.compile(TARGET_PATTERN)


@dataclass(frozen=True)
class Entry:
    """One registered implementation.

    ``factory(config, host)`` builds the component from its validated config
    Struct (for demos: ``factory()`` runs the demo). For analyses
    (``Kind.by_target``) ``factory`` is instead the ``"module:qualname"``
    string of the function. ``plugin`` is the name of the plugin that
    registered it.
    """

    kind: Kind
    name: str
    factory: Callable[..., Any] | str
    config: type[msgspec.Struct] | None
    plugin: str
    summary: str = ""


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

    def add(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        config: type[msgspec.Struct] | None = None,
        summary: str = "",
        plugin: str = "",
    ) -> None:
        """Register ``factory`` under ``name``.

        For analyses, ``factory`` is a ``"package.module:function"``
        string (``TARGET_PATTERN``) and ``config`` is not given; it is not
        imported here. Raises ``ValueError`` for a malformed entry or if
        ``name`` is already registered by another plugin: two plugins must
        not silently shadow each other.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind.value} name must be a non-empty string, got {name!r}")
        if self.kind.by_target:
            if not isinstance(factory, str) or not _TARGET.match(factory):
                raise ValueError(
                    f"{self.kind.value} {name!r} must be registered as a 'package.module:function' string, "
                    f"got {factory!r}: it is imported only where it runs"
                )
            if config is not None:
                raise ValueError(f"{self.kind.value} {name!r} takes no config Struct")
        elif self.kind is not Kind.DEMO and config is None:
            raise ValueError(f"{self.kind.value} {name!r} needs a config Struct")
        existing = self.entries.get(name)
        if existing is not None:
            raise ValueError(
                f"{self.kind.value} {name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {plugin!r}; disable one of them"
            )
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
        distribution that would provide ``name``; when that distribution's
        plugin is installed but failed to load, the error is chained to the
        plugin's own exception.
        """
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        available = ", ".join(self.names()) or "none"
        named = self.kind is Kind.DEMO or self.kind.by_target
        what = self.kind.value if named else f"{self.kind.value} kind"
        message = f"{what} {name!r} is not available (available: {available})"
        provider = KNOWN_PROVIDERS.get(self.kind, {}).get(name)
        cause: BaseException | None = None
        broken = [f for f in self.failures.values() if provider and f.distribution == provider]
        if broken:
            cause = broken[0].error
            hint = (
                f"{provider} is installed but its plugin {broken[0].plugin!r} failed to load: "
                f"{type(cause).__name__}: {cause}; run `bridgehost plugins` for the traceback"
            )
        elif provider:
            hint = f"it is provided by {provider}, which may not be installed: pip install {provider}"
        else:
            hint = "the plugin that provides it may not be installed; `bridgehost plugins` lists what loaded"
            if len(self.failures) == 1:
                only = next(iter(self.failures.values()))
                cause = only.error
                hint += f"; plugin {only.plugin!r} failed to load and may provide it"
        error = UnknownKindError(source, key, message, hint)
        if cause is not None:
            raise error from cause
        raise error


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
        factory: Callable[..., Any] | str,
        *,
        config: type[msgspec.Struct] | None = None,
        summary: str = "",
    ) -> None:
        """Register ``factory`` under ``name`` (see ``Registry.add``)."""
        self.registry.add(name, factory, config=config, summary=summary, plugin=self.plugin)
