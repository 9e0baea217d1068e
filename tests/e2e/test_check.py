"""`bridgehost check CONFIG` checks everything it can without starting:
kinds, keys, environment overrides, callable targets, scripts and named
analyses, endpoints, the log file's folder; it warns about what requests
would trip over."""

import asyncio
import logging
import os

import pytest

from bridgehost.cli import main
from bridgehost.host import Host

GOOD = """
[host]
name = "rig"
log_file = "logs/host.log"

[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:5555"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "./datastore"

[[tasks]]
name = "traction.max_force"
kind = "analysis"
analysis = "traction.max_force"
"""


@pytest.fixture
def check(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BRIDGEHOST_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("BRIDGEHOST_DISABLE_PLUGINS", raising=False)
    (tmp_path / "logs").mkdir()

    def run(text: str) -> tuple[int, str, str]:
        path = tmp_path / "rig.toml"
        path.write_text(text)
        code = main(["check", str(path)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_good_config_is_listed_with_its_overrides_and_warnings(check, monkeypatch):
    monkeypatch.setenv("BRIDGEHOST__TASKS__0__TIMEOUT_S", "30")
    code, out, err = check(GOOD)
    assert code == 0, err
    assert "  transports[0]: zmq\n  triggers[0]: zmq\n  tasks[0]: analysis 'python.run_analysis'\n" in out
    assert "tasks[0].timeout_s from the environment variable BRIDGEHOST__TASKS__0__TIMEOUT_S" in out
    assert "warning: tasks[0] (analysis): scripts folder" in out and "does not exist" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('endpoint = "tcp://127.0.0.1:5555"', 'endpoint = "tcp://127.0.0.1:99999"'), "transports[0].endpoint: 'tcp://127.0.0.1:99999' is not tcp://HOST:PORT"),
        (('endpoint = "tcp://127.0.0.1:5555"', 'endpoint = "ipc:///no/such/folder/h.sock"'), "transports[0].endpoint: the folder /no/such/folder"),
        (('datastore = "./datastore"', 'script = "analyze.py"'), "tasks[0].script: script 'analyze.py' not found in"),
        (('analysis = "traction.max_force"', 'analysis = "traction.min_force"'), "tasks[1].analysis: analysis 'traction.min_force' is not available (available: traction.max_force"),
        (('log_file = "logs/host.log"', 'log_file = "nowhere/host.log"'), "host.log_file: cannot write to the folder"),
        (('kind = "zmq"\n\n[[tasks]]', 'kind = "modbus"\n\n[[tasks]]'), "triggers[0].kind: trigger kind 'modbus' is not available"),
    ],
)
def test_each_problem_is_an_error_naming_its_key(check, change, message):
    assert change[0] in GOOD
    code, out, err = check(GOOD.replace(*change, 1))
    assert code == 2 and out == ""
    assert message in err


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.write_bytes(b'[host]\nname = "pr\xfcfstand"\n'), "not UTF-8 text (byte 0xfc at offset 17)"),
    ],
    ids=["folder", "latin-1"],
)
def test_a_config_path_that_is_no_utf8_file_is_one_line_and_exit_2(tmp_path, capsys, command, make, problem):
    path = tmp_path / "rig.toml"
    make(path)
    assert main([command, str(path)]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"bridgehost: {path}: {problem}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_empty_config_warns_that_there_is_nothing_to_do(check):
    code, out, err = check("")
    assert code == 0, err
    assert "warning: the config has no [[tasks]]: the host has nothing to run" in out


def test_check_warns_of_an_endpoint_open_to_other_hosts_without_curve(check):
    # check binds nothing: 0.0.0.0 is only read here
    code, out, err = check(GOOD.replace("tcp://127.0.0.1:5555", "tcp://0.0.0.0:5555"))
    assert code == 0, err
    assert "warning: transports[0] (zmq): tcp://0.0.0.0:5555 is reachable from other hosts and CURVE is off" in out


def test_run_logs_at_start_every_warning_check_prints(check, tmp_path):
    """One list of warnings: what `check` prints, `run` logs (an abstract
    socket, which has no file permissions, and a task nothing can request)."""
    text = (
        f'[[transports]]\nkind = "zmq"\nendpoint = "ipc://@bridgehost-test-{os.getpid()}"\n'
        '[[tasks]]\nname = "t"\nkind = "callable"\ntarget = "json:dumps"\n'
    )
    code, out, err = check(text)
    assert code == 0, err
    printed = [line.removeprefix("  warning: ") for line in out.splitlines() if line.startswith("  warning: ")]
    assert any("abstract socket" in w for w in printed), out
    host = Host.from_file(tmp_path / "rig.toml")

    async def start_and_stop():
        await host.start()
        await host.stop()

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # main() replaced the root's handlers, caplog's too
    logging.getLogger("bridgehost").addHandler(handler)
    try:
        asyncio.run(start_and_stop())
    finally:
        logging.getLogger("bridgehost").removeHandler(handler)
    logged = [r.getMessage() for r in records]
    assert [w for w in printed if w not in logged] == []


def test_each_analysis_task_says_what_its_sandbox_enforces_on_this_kernel(check):
    from bridgehost_analysis.sandbox import abi_version

    code, out, err = check(GOOD.replace('datastore = "./datastore"', 'datastore = "./datastore"\nnetwork = true', 1))
    assert code == 0, err
    abi = abi_version()
    head = f"sandbox best-effort: Landlock ABI {abi}" if abi else "sandbox best-effort: no Landlock on this kernel"
    assert f"tasks[0] (analysis): {head}" in out and f"tasks[1] (analysis): {head}" in out
    assert "tasks[0] (analysis):   not enforced: TCP (network = true)" in out
    if abi >= 4:
        assert "tasks[1] (analysis):   enforced: no TCP bind or connect" in out


def test_require_on_a_kernel_that_cannot_enforce_everything_is_a_config_error(check):
    from bridgehost_analysis.sandbox import FEATURES, abi_version

    code, _out, err = check(GOOD.replace('datastore = "./datastore"', 'datastore = "./datastore"\nsandbox = "require"', 1))
    if abi_version() >= max(f.abi for f in FEATURES):
        assert code == 0, err
    else:
        assert code == 2 and "tasks[0].sandbox: 'require', but this kernel" in err


def test_a_disabled_plugin_is_named_as_disabled_not_as_missing(check, monkeypatch):
    monkeypatch.setenv("BRIDGEHOST_DISABLE_PLUGINS", "analysis")
    code, _, err = check(GOOD)
    assert code == 2
    assert "task kind 'analysis' is not available" in err
    assert "bridgehost-analysis is installed but its plugin 'analysis' is disabled by BRIDGEHOST_DISABLE_PLUGINS" in err
    assert "pip install" not in err


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ({"file": '[plugins]\nload = ["ipc", "analyss"]\n'}, "plugins.load"),
        ({"file": '[plugins]\ndisable = ["epic"]\n'}, "plugins.disable"),
        ({"env": ("BRIDGEHOST_LOAD_PLUGINS", "ipc,analyss")}, "BRIDGEHOST_LOAD_PLUGINS"),
        ({"env": ("BRIDGEHOST_DISABLE_PLUGINS", "analyss")}, "BRIDGEHOST_DISABLE_PLUGINS"),
    ],
    ids=["load", "disable", "load-env", "disable-env"],
)
def test_an_unknown_plugin_name_is_an_error_listing_the_installed_ones(check, monkeypatch, setting, key):
    if "env" in setting:
        monkeypatch.setenv(*setting["env"])
    code, out, err = check(setting.get("file", "") + GOOD)
    assert code == 2, out
    assert f"rig.toml: {key}: no installed plugin is named " in err
    assert "installed plugins: analysis, builtin, epics, ipc" in err
