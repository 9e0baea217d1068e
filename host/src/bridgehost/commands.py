"""Sub-commands of ``bridgehost``, contributed by plugins.

The core's CLI defines ``run``, ``check``, ``plugins`` and ``demo``; every
other command comes from a plugin's ``register_commands`` hook, in the way
tox 4 lets plugins add to its argparse parser (``tox_add_option``,
https://tox.wiki/en/latest/plugins.html) and llm and datasette let them add
click commands (``register_commands(cli)``,
https://llm.datasette.io/en/stable/plugins/plugin-hooks.html).

A command is a name, a ``run(args) -> int`` handler and an optional
``configure(parser)`` that adds its arguments. ``bridgehost --help`` builds
every parser, so ``configure`` must stay cheap: a plugin imports what its
command needs (a messaging library, rich, dask) inside ``run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CORE_COMMANDS = frozenset({"run", "check", "plugins", "demo"})
"""The core's own sub-commands; a plugin cannot replace them."""

Configure = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One ``bridgehost NAME`` sub-command and the plugin that added it."""

    name: str
    run: Handler
    configure: Configure | None
    help: str
    plugin: str


class CommandRegistry:
    """The sub-commands by name. A plugin's ``register_commands`` hook gets a
    view of it (``for_plugin``) that records the plugin on each command."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(
        self, name: str, run: Handler, *, configure: Configure | None = None, help: str = "", plugin: str = ""
    ) -> None:
        """Add ``bridgehost NAME``.

        Raises ``ValueError`` for a name that is not a lower-case word
        (letters, digits, ``-``), a core command's name, or one another
        plugin already added: two plugins must not silently shadow each other's commands.
        Raises ``TypeError`` if ``run`` is not callable.
        """
        if not name or not all(c.islower() or c.isdigit() or c == "-" for c in name) or name[0] == "-":
            raise ValueError(f"command name must be a lower-case word such as 'status', got {name!r}")
        if not callable(run):
            raise TypeError(f"command {name!r}: run must be callable, got {run!r}")
        if name in CORE_COMMANDS:
            raise ValueError(f"command {name!r} is one of the core's ({', '.join(sorted(CORE_COMMANDS))}); choose another name")
        existing = self.commands.get(name)
        if existing is not None:
            raise ValueError(
                f"command {name!r} is added twice: by {existing.plugin!r} and by {plugin!r}; disable one of them"
            )
        self.commands[name] = Command(name, run, configure, help, plugin)

    def names(self) -> list[str]:
        return sorted(self.commands)

    def for_plugin(self, plugin: str) -> PluginCommands:
        return PluginCommands(self, plugin)

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands.values())

    def __contains__(self, name: object) -> bool:
        return name in self.commands


@dataclass(frozen=True)
class PluginCommands:
    """What ``register_commands`` receives: ``add()`` records the calling plugin."""

    registry: CommandRegistry
    plugin: str

    def add(self, name: str, run: Handler, *, configure: Configure | None = None, help: str = "") -> None:
        """Add ``bridgehost NAME`` (see ``CommandRegistry.add``)."""
        self.registry.add(name, run, configure=configure, help=help, plugin=self.plugin)
