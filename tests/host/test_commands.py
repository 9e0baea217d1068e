"""Plugins add ``bridgehost`` sub-commands through ``register_commands``; the
command line loads them without importing any component's code."""

import os
import subprocess
import sys
import types

import pytest

from bridgehost import hookimpl
from bridgehost.cli import build_parser, main
from bridgehost.plugins import load_plugins


def command_plugin(name, *added):
    """A plugin module adding ``added``: (command name, handler) pairs."""

    def register_commands(commands):
        for command, run in added:
            commands.add(
                command, run, configure=lambda p: p.add_argument("--times", type=int, default=1), help=f"{command}!"
            )

    module = types.ModuleType(name)
    module.register_commands = hookimpl(register_commands)
    return (name, module)


def test_a_plugin_command_is_parsed_and_run_with_its_own_arguments(capsys):
    def greet(args):
        print("hello " * args.times)
        return 3

    plugins = load_plugins(load=[], extra=[command_plugin("greeter", ("greet", greet))])
    assert plugins.infos["greeter"].kinds == {"command": ["greet"]}
    args = build_parser(plugins.commands).parse_args(["greet", "--times", "2"])
    assert args.func(args) == 3
    assert capsys.readouterr().out.strip() == "hello hello"


def test_a_command_named_like_a_core_command_or_taken_fails_that_plugin_only():
    plugins = load_plugins(
        load=[],
        extra=[
            command_plugin("first", ("greet", lambda a: 0)),
            command_plugin("second", ("greet", lambda a: 0)),
            command_plugin("usurper", ("run", lambda a: 0)),
        ],
    )
    assert [c.plugin for c in plugins.commands] == ["first"]
    assert "added twice" in str(plugins.failures["second"].error)
    assert "one of the core's" in str(plugins.failures["usurper"].error)


def test_call_comes_from_bridgehost_ipc_and_goes_when_it_is_disabled(monkeypatch, capsys):
    plugins = load_plugins()
    assert {c.name: c.plugin for c in plugins.commands}["call"] == "ipc"
    monkeypatch.setenv("BRIDGEHOST_DISABLE_PLUGINS", "ipc")
    with pytest.raises(SystemExit) as exit_:
        main(["call", "host.ping"])
    assert exit_.value.code == 2
    assert "invalid choice: 'call'" in capsys.readouterr().err


def test_the_command_line_imports_no_component_code():
    # `bridgehost --help` builds every command's parser: no pyzmq, p4p or numpy
    # may be imported for it (they take seconds on a cold cache).
    probe = (
        "import sys, contextlib, io\n"
        "from bridgehost.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "assert 'call' in out.getvalue(), out.getvalue()\n"
        "print(sorted(m for m in ('zmq', 'p4p', 'numpy', 'bridgehost_ipc.client') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
