"""A bad config gets an error naming the file, the key path, what was expected
and what was found; the CLI exits 2 on it."""

import subprocess
import sys
import tomllib

import pytest

from bridgehost.config import load_config, parse_config
from bridgehost.errors import ConfigError, UnknownKindError
from bridgehost.plugins import load_plugins


def check(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), load_plugins(load=[]), source="rig.toml")
    return info.value


TASK = '[[tasks]]\nname = "t"\nkind = "callable"\ntarget = "targets:echo"\n'


def test_valid_config_gives_typed_structs(targets):
    config = parse_config(tomllib.loads('[host]\nname = "rig"\n' + TASK + "timeout_s = 2.5\n"), load_plugins(load=[]))
    assert config.host.name == "rig"
    assert config.tasks[0].name == "t"
    assert config.tasks[0].timeout_s == 2.5
    assert config.tasks[0].target == "targets:echo"  # the kind's own Struct, not the base


def test_wrong_type_names_file_key_expected_and_found():
    error = check(TASK + 'timeout_s = "30s"\n')
    text = str(error)
    assert text.startswith("rig.toml: tasks[0].timeout_s: ")
    assert "expected float" in text
    assert "'30s' (str)" in text


def test_out_of_range_value_names_the_bound():
    error = check(TASK + "timeout_s = -1\n")
    assert error.key == "tasks[0].timeout_s"
    assert "> 0" in error.message and "-1" in error.message


def test_log_level_is_checked_before_running():
    error = check('[host]\nlog_level = "LOUD"\n')
    assert error.key == "host.log_level"
    assert "DEBUG" in error.message and "'LOUD' (str)" in error.message


def test_nested_list_item_path():
    error = check('[plugins]\ndisable = ["a", 3]\n')
    assert error.key == "plugins.disable[1]"
    assert "expected str" in error.message and "3 (int)" in error.message


def test_misspelt_key_is_refused_with_the_valid_keys():
    error = check(TASK + "timeot_s = 3\n")
    assert error.key == "tasks[0].timeot_s"
    assert error.message == "unknown key"
    assert "timeout_s" in error.hint


def test_missing_required_key():
    error = check('[[tasks]]\nname = "t"\nkind = "callable"\n')
    assert error.key == "tasks[0].target"
    assert "missing" in error.message


def test_missing_kind_lists_the_available_kinds():
    error = check('[[tasks]]\nname = "t"\n')
    assert error.key == "tasks[0].kind"
    assert "callable" in error.hint


def test_unknown_kind_lists_available_and_names_the_distribution():
    error = check('[[triggers]]\nkind = "epics"\nprefix = "RIG:"\n')
    assert isinstance(error, UnknownKindError)
    assert error.key == "triggers[0].kind"
    assert "trigger kind 'epics' is not available" in error.message
    # installed, but this test's load=[] leaves it out: say so, not "pip install"
    assert "bridgehost-epics is installed but its plugin 'epics' is not in [plugins] load: add 'epics' to it" in error.hint


def test_unknown_top_level_table():
    error = check("[hosts]\nname = 'x'\n")
    assert error.key == "hosts"
    assert "transports" in error.hint


def test_duplicate_task_names():
    error = check(TASK + TASK)
    assert error.key == "tasks[1].name"
    assert "tasks[0]" in error.message


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[host\nname=")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad, load_plugins(load=[]))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", load_plugins(load=[]))


def test_check_exits_2_with_the_message(tmp_path):
    path = tmp_path / "rig.toml"
    path.write_text(TASK + 'timeout_s = "30s"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{path}: tasks[0].timeout_s: expected float" in result.stderr


def test_check_reports_a_target_that_does_not_import(tmp_path):
    path = tmp_path / "rig.toml"
    path.write_text('[[tasks]]\nname = "t"\nkind = "callable"\ntarget = "no_such_module:f"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bridgehost.cli", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "tasks[0].target: cannot import 'no_such_module:f'" in result.stderr


@pytest.mark.parametrize(
    ("line", "key", "bound"),
    [
        ("timeout_s = inf", "timeout_s", "<= 2592000.0"),
        ("timeout_s = nan", "timeout_s", "> 0.0"),
        ("timeout_s = 1e300", "timeout_s", "<= 2592000.0"),
        ("concurrency = 300", "concurrency", "<= 256"),
        ("concurrency = 100000", "concurrency", "<= 256"),
        ("queue_size = 99999999999999999999", "queue_size", "<= 10000"),
    ],
)
def test_every_task_has_finite_bounded_limits_named_in_the_error(line, key, bound):
    error = check(TASK + line + "\n")
    assert error.key == f"tasks[0].{key}"
    assert bound in error.message, error.message


def test_an_infinite_timeout_from_the_environment_is_refused_naming_the_variable():
    var = "BRIDGEHOST__TASKS__0__TIMEOUT_S"
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(TASK), load_plugins(load=[]), source="rig.toml", environ={var: "inf"})
    assert info.value.key == "tasks[0].timeout_s"
    assert "<= 2592000.0" in info.value.message and var in info.value.message
