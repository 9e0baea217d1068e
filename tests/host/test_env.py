"""Environment variables override single config keys for container
deployments: BRIDGEHOST__<TABLE>__<KEY> and BRIDGEHOST__<ARRAY>__<INDEX>__<KEY>.
Precedence: command line > environment > file > defaults."""

import tomllib

import pytest

from bridgehost.config import load, parse_config
from bridgehost.errors import ConfigError
from bridgehost.plugins import load_plugins

FILE = """
[host]
name = "rig"

[plugins]
disable = ["epics"]

[[tasks]]
name = "echo"
kind = "callable"
target = "targets:echo"
timeout_s = 10

[[tasks]]
name = "add"
kind = "callable"
target = "targets:sync_add"
"""


def parse(environ, text=FILE):
    return parse_config(tomllib.loads(text), load_plugins(load=[]), source="rig.toml", environ=environ)


def test_variables_override_keys_of_tables_and_of_arrays_of_tables(targets):
    config = parse(
        {
            "BRIDGEHOST__HOST__NAME": "123",  # a string field keeps the text: no TOML guessing
            "BRIDGEHOST__HOST__LOG_FORMAT": "json",
            "bridgehost__tasks__1__timeout_s": "2.5",  # names are case-insensitive
            "BRIDGEHOST__TASKS__1__QUEUE_SIZE": "0",
            "BRIDGEHOST__PLUGINS__DISABLE": '["a", "b"]',
            "OTHER": "ignored",
        }
    )
    assert config.host.name == "123" and config.host.log_format == "json"
    assert config.tasks[0].timeout_s == 10.0 and config.tasks[1].timeout_s == 2.5 and config.tasks[1].queue_size == 0
    assert config.plugins.disable == ["a", "b"]
    assert config.env == {
        "host.name": "BRIDGEHOST__HOST__NAME",
        "host.log_format": "BRIDGEHOST__HOST__LOG_FORMAT",
        "plugins.disable": "BRIDGEHOST__PLUGINS__DISABLE",
        "tasks[1].timeout_s": "bridgehost__tasks__1__timeout_s",
        "tasks[1].queue_size": "BRIDGEHOST__TASKS__1__QUEUE_SIZE",
    }


def test_a_kind_specific_key_and_the_kind_itself_can_be_overridden(targets):
    config = parse({"BRIDGEHOST__TASKS__0__TARGET": "targets:no_args"})
    assert config.tasks[0].target == "targets:no_args"
    with pytest.raises(ConfigError, match="task kind 'analysis-x' is not available"):
        parse({"BRIDGEHOST__TASKS__0__KIND": "analysis-x"})


@pytest.mark.parametrize(
    ("environ", "key", "match"),
    [
        ({"BRIDGEHOST__TASKS__0__TIMEOUT_S": "-1"}, "tasks[0].timeout_s", r"expected float > 0.0, found -1 \(int\) \(set by the environment variable BRIDGEHOST__TASKS__0__TIMEOUT_S\)"),
        ({"BRIDGEHOST__HOST__LOG_LEVEL": "LOUD"}, "host.log_level", r"expected one of .*'DEBUG'.*found 'LOUD'.*BRIDGEHOST__HOST__LOG_LEVEL"),
        ({"BRIDGEHOST__TASKS__0__TIMEOUT_S": "30s"}, "BRIDGEHOST__TASKS__0__TIMEOUT_S", "'30s' is not a TOML value"),
        ({"BRIDGEHOST__TASKS__0__TIMEOT_S": "3"}, "BRIDGEHOST__TASKS__0__TIMEOT_S", r"tasks\[0\].timeot_s: unknown key"),
        ({"BRIDGEHOST__TASKS__2__TIMEOUT_S": "3"}, "BRIDGEHOST__TASKS__2__TIMEOUT_S", r"tasks\[2\] is not in the file, which has 2"),
        ({"BRIDGEHOST__WATCHDOGS__0__PERIOD_S": "3"}, "BRIDGEHOST__WATCHDOGS__0__PERIOD_S", "which has 0"),
        ({"BRIDGEHOST__TASK__0__TIMEOUT_S": "3"}, "BRIDGEHOST__TASK__0__TIMEOUT_S", "names no config key"),
        ({"BRIDGEHOST__HOST": "x"}, "BRIDGEHOST__HOST", "names no config key"),
    ],
)
def test_a_bad_override_names_its_variable(targets, environ, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse(environ)
    assert info.value.key == key and info.value.source == "rig.toml"


def test_load_reads_the_process_environment(targets, tmp_path, monkeypatch):
    path = tmp_path / "rig.toml"
    path.write_text(FILE)
    monkeypatch.setenv("BRIDGEHOST__TASKS__0__TIMEOUT_S", "7")
    monkeypatch.setenv("BRIDGEHOST__PLUGINS__LOAD", "[]")  # applies before plugins load
    config, plugins = load(path)
    assert config.tasks[0].timeout_s == 7.0
    assert set(plugins.infos) == {"builtin"}


def test_without_environ_nothing_is_overridden(targets, monkeypatch):
    monkeypatch.setenv("BRIDGEHOST__HOST__NAME", "from-env")
    assert parse(None).host.name == "rig"
