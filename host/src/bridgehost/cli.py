"""The ``bridgehost`` command.

Exit codes: 0 success; 1 a runtime failure (a component did not start, a
call failed or timed out); 2 a usage or config error (the message names the
file, the key and the fix).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import get_args

import bridgehost
from bridgehost import logs
from bridgehost.commands import CommandRegistry
from bridgehost.components import Describing
from bridgehost.config import Config, LogLevel, load
from bridgehost.errors import BridgehostError, ConfigError
from bridgehost.host import Host, StartError
from bridgehost.logs import LogFormat
from bridgehost.plugins import load_plugins
from bridgehost.registry import Kind

_ORDER = (Kind.TRANSPORT, Kind.TRIGGER, Kind.TASK, Kind.WATCHDOG)  # as a config file lists them


def configure_logging(args: argparse.Namespace, config: Config) -> None:
    """Logging as the command line, else the config's ``[host]`` keys, say.
    Raises ConfigError if ``log_file`` cannot be opened."""
    path = log_file_path(config)
    try:
        logs.configure(
            args.log_level or config.host.log_level,
            format=args.log_format or config.host.log_format,
            file=path,
            max_bytes=int(config.host.log_file_max_mb * (1 << 20)),
            backups=config.host.log_file_backups,
            host=config.host.name,
        )
    except OSError as e:
        raise ConfigError(
            config.source, "host.log_file", f"cannot open {path}: {e.strerror}", "create its folder or fix the path"
        ) from e


def log_file_path(config: Config) -> Path | None:
    """``[host] log_file`` resolved against the config file's folder."""
    if config.host.log_file is None:
        return None
    return config.base_dir / Path(config.host.log_file).expanduser()


def cmd_run(args: argparse.Namespace) -> int:
    config, plugins = load(args.config)
    configure_logging(args, config)
    host = Host(config, plugins)
    try:
        asyncio.run(host.serve())
    except StartError as e:
        print(f"bridgehost: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Everything that can be checked without starting: the TOML, every key
    and kind (``load``), every component's own fields (building it: targets
    import, scripts and analyses exist, endpoints parse), the log file's
    folder; then what each component that is ``Describing`` will do on this
    machine (e.g. how an analysis task confines its scripts on this kernel),
    and ``Host.warnings()``, which ``run`` logs at start."""
    config, plugins = load(args.config)
    host = Host(config, plugins)  # builds every component: imports targets, resolves transports
    path = log_file_path(config)
    if path is not None and not os.access(path.parent, os.W_OK):
        raise ConfigError(
            config.source, "host.log_file", f"cannot write to the folder {path.parent}", "create it or fix the path"
        )
    print(f"{args.config}: OK")
    for component in sorted(host.components, key=lambda c: (_ORDER.index(c.kind), c.index)):
        name = getattr(component.config, "name", "")
        print(f"  {component.kind.section}[{component.index}]: {component.config.kind}{f' {name!r}' if name else ''}")
    for key, var in sorted(config.env.items()):
        print(f"  {key} from the environment variable {var}")
    for component in host.components:
        if isinstance(component.impl, Describing):
            for line in component.impl.describe():
                print(f"  {component.label}: {line}")
    for warning in host.warnings():  # the same list `run` logs at start
        print(f"  warning: {warning}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = load_plugins()
    infos = sorted(plugins.infos.values(), key=lambda i: i.name)
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return 0
    for info in infos:
        where = f"{info.distribution or '-'} {info.version or ''}".strip()
        print(f"{info.name}  ({where})  {info.module}")
        for kind, names in sorted(info.kinds.items()):
            print(f"    {kind}: {', '.join(names)}")
        if info.error:
            print(f"    FAILED TO LOAD: {info.error}")
            if args.traceback:
                print("    " + plugins.failures[info.name].traceback.rstrip().replace("\n", "\n    "))
    for skipped in sorted(plugins.skipped.values(), key=lambda p: p.plugin):
        print(f"{skipped.plugin}  ({skipped.distribution or '-'})  NOT LOADED: {skipped.reason}")
    for setting, names in plugins.unknown.items():
        print(
            f"bridgehost: warning: {setting} names no installed plugin: {', '.join(names)} "
            f"(installed: {', '.join(plugins.installed)})",
            file=sys.stderr,
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    registry = load_plugins().registry(Kind.DEMO)
    if args.list:
        for entry in registry:
            print(f"{entry.name}  ({entry.plugin})  {entry.summary}")
        return 0
    entry = registry.get(args.name, source="bridgehost demo")
    return int(entry.factory() or 0)


def build_parser(commands: CommandRegistry | None = None) -> argparse.ArgumentParser:
    """The ``bridgehost`` parser: the core's commands, then ``commands``
    (what plugins added through ``register_commands``)."""
    parser = argparse.ArgumentParser(
        prog="bridgehost", description="Run Python logic beside a control system, safely."
    )
    parser.add_argument("--version", action="version", version=f"bridgehost {bridgehost.__version__}")
    parser.add_argument(
        "--log-level", choices=get_args(LogLevel), help="default: the config's [host] log_level, else INFO"
    )
    parser.add_argument(
        "--log-format", choices=get_args(LogFormat), help="human lines or JSON lines (default: the config's [host] log_format)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a host from a TOML config until SIGTERM, SIGINT or SIGHUP")
    p.add_argument("config", help="path of the TOML config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a config and build its components without starting them")
    p.add_argument("config", help="path of the TOML config")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("plugins", help="list installed plugins, what each registers, and load failures")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--traceback", action="store_true", help="show the traceback of each load failure")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("demo", help="run a self-contained demo (default: traction)")
    p.add_argument("name", nargs="?", default="traction", help="which demo (default traction)")
    p.add_argument("--list", action="store_true", help="list the demos the installed plugins provide")
    p.set_defaults(func=cmd_demo)

    for command in commands if commands is not None else ():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        if command.configure is not None:
            command.configure(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Plugins are selected by the environment here: argv is parsed before any
    # config is read. No registry is filled, so no component's code is imported.
    args = build_parser(load_plugins(kinds=()).commands).parse_args(argv)
    if args.command != "run":
        logs.configure(args.log_level or "WARNING", format=args.log_format or "human")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"bridgehost: {e}", file=sys.stderr)
        return 2
    except BridgehostError as e:
        print(f"bridgehost: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
