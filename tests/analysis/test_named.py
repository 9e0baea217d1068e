"""Named analyses (hook ``register_analyses``): a request or a task's config
names ``traction.max_force`` instead of a script file, and the function runs
exactly as a script does: its own process, the task's limits, the same ctx."""

from __future__ import annotations

import os
import resource
import sys
import textwrap
import tomllib

import pytest

from bridgehost import hookimpl
from bridgehost.config import Config, parse_config
from bridgehost.errors import ConfigError, InvalidRequest, TaskCrashed
from bridgehost.host import Host
from bridgehost.plugins import load_plugins
from bridgehost.registry import Catalog
from bridgehost_analysis.hookspecs import ANALYSES
from bridgehost_analysis.task import AnalysisTask, AnalysisTaskConfig
from bridgehost_analysis.traction import SCRIPT, SCRIPTS_DIR

NAMED = """
import os, resource

calls = 0

def where(ctx):
    global calls
    calls += 1  # module state: 1 on every run if each run is a fresh process
    return {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
        "calls": calls,
        "ctx_keys": list(ctx),
        "custom_params": ctx["custom_params"],
    }

def returns_a_set(ctx):
    return {"ids": {1, 2}}

def raises(ctx):
    raise ValueError("the force trace is empty")
"""


@pytest.fixture
def named_module(tmp_path, monkeypatch):
    """``named_analyses``, importable here and (through PYTHONPATH) in the child."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "named_analyses.py").write_text(textwrap.dedent(NAMED))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return "named_analyses"


class TestPlugin:
    @hookimpl
    def register_analyses(self, registry):
        registry.add("test.where", "named_analyses:where", summary="where and how it ran")
        registry.add("test.set", "named_analyses:returns_a_set")
        registry.add("test.raises", "named_analyses:raises")
        registry.add("test.missing", "named_analyses:no_such_function")


@pytest.fixture
def plugins(named_module):
    """The installed analysis plugin (``traction.max_force``) and the test's."""
    return load_plugins(load=["analysis"], extra=[("test", TestPlugin())])


@pytest.fixture
def named_task(tmp_path, plugins):
    def make(**config) -> AnalysisTask:
        cfg = AnalysisTaskConfig(kind="analysis", name="t", datastore="./datastore", **config)
        return AnalysisTask(cfg, Host(Config(source=str(tmp_path / "host.toml")), plugins))

    return make


def by_name(run, analysis: str, **extra):
    return {"analysis": analysis, **run.ids, **extra}


def test_a_registered_analysis_gives_what_its_script_gives(run, store, named_task, analyse) -> None:
    store.install_script(SCRIPTS_DIR / SCRIPT)
    task = named_task()
    assert analyse(task, by_name(run, "traction.max_force")) == analyse(task, run.request(SCRIPT))
    force = [0.0, 100.5, 200.1, 300.8]  # the run fixture's trace
    assert analyse(task, by_name(run, "traction.max_force")) == {"max_force": 300.8, "avg_force": sum(force) / 4}


def test_it_runs_in_a_fresh_limited_process_in_the_run_folder(run, named_task, analyse) -> None:
    task = named_task(memory_limit_mb=512)
    first = analyse(task, by_name(run, "test.where", custom_params={"limit": 250}))
    second = analyse(task, by_name(run, "test.where"))
    assert first["pid"] != os.getpid() and first["pid"] != second["pid"]
    assert first["calls"] == second["calls"] == 1
    assert first["cwd"] == str(run.path.resolve())
    assert first["rlimit_as"] == 512 << 20 != resource.getrlimit(resource.RLIMIT_AS)[0]
    assert first["custom_params"] == {"limit": 250}
    assert first["ctx_keys"] == list(run.ctx({}))  # the same ctx a script gets


def test_its_result_is_checked_and_its_errors_reported_as_a_script_s(run, named_task, analyse) -> None:
    with pytest.raises(TaskCrashed, match=r"test\.set:returns_a_set.*result\['ids'\] is a set"):
        analyse(named_task(), by_name(run, "test.set"))
    with pytest.raises(TaskCrashed, match="raised ValueError: the force trace is empty") as info:
        analyse(named_task(), by_name(run, "test.raises"))
    assert 'named_analyses.py", line' in info.value.data["traceback"]
    with pytest.raises(TaskCrashed, match="AttributeError.*no_such_function"):
        analyse(named_task(), by_name(run, "test.missing"))


def test_an_unknown_analysis_is_rejected_naming_those_available(run, named_task, analyse) -> None:
    with pytest.raises(InvalidRequest, match=r"analysis 'nope' is not available \(available: test\.missing.*traction\.max_force"):
        analyse(named_task(), by_name(run, "nope"))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"script": SCRIPT, "analysis": "traction.max_force"}, "give 'script' or 'analysis', not both"),
        ({"analysis": "traction.max_force", "function": "f"}, "'function' goes with 'script'"),
        ({"analysis": 3}, "request field 'analysis': expected str, got int"),
        ({}, r"missing request field\(s\): 'script' \(name a script, or a registered analysis"),
    ],
)
def test_requests_name_one_script_or_one_analysis(run, named_task, analyse, params, match) -> None:
    with pytest.raises(InvalidRequest, match=match):
        analyse(named_task(), {**run.ids, **params})


def test_a_task_config_may_fix_the_analysis(run, named_task, analyse) -> None:
    task = named_task(analysis="traction.max_force")
    assert analyse(task, run.ids)["max_force"] == 300.8
    with pytest.raises(InvalidRequest, match="runs the analysis 'traction.max_force', set in its config: leave 'script'"):
        analyse(task, {**run.ids, "script": SCRIPT})


def test_a_task_config_may_fix_the_script_and_function(run, store, script, named_task, analyse) -> None:
    script("two.py", "def calculate_results(ctx):\n    return {'f': 1}\ndef other(ctx):\n    return {'f': 2}\n")
    assert analyse(named_task(script="two.py", function="other"), run.ids) == {"f": 2}
    assert analyse(named_task(script="two.py"), run.ids) == {"f": 1}


CONFIG = """
[[tasks]]
name = "t"
kind = "analysis"
datastore = "./datastore"
"""


@pytest.mark.parametrize(
    ("extra", "key", "match"),
    [
        ('analysis = "traction.max_forse"', "tasks[0].analysis", r"analysis 'traction.max_forse' is not available \(available: .*traction\.max_force"),
        ('script = "absent.py"', "tasks[0].script", "script 'absent.py' not found in"),
        ('analysis = "traction.max_force"\nscript = "x.py"', "tasks[0].analysis", "not both"),
        ('function = "other"', "tasks[0].function", "'function' goes with 'script'"),
    ],
)
def test_a_bad_fixed_analysis_or_script_is_a_config_error(tmp_path, plugins, extra, key, match) -> None:
    config = parse_config(tomllib.loads(CONFIG + extra), plugins, source=str(tmp_path / "rig.toml"))
    with pytest.raises(ConfigError, match=match) as info:
        Host(config, plugins)
    assert info.value.key == key


def test_an_analysis_must_be_registered_as_an_import_path() -> None:
    registry = Catalog(ANALYSES)

    def peak(ctx):
        return {}

    for bad in (peak, "named_analyses.where", "a b:c", "mod:"):
        with pytest.raises(ValueError, match="'package.module:function' string"):
            registry.add("x.peak", bad)
    registry.add("x.peak", "pkg.mod:Class.peak")
    assert registry.get("x.peak").target == "pkg.mod:Class.peak"


def test_the_host_does_not_import_a_registered_analysis(plugins) -> None:
    # The target is imported only in the child, under its limits.
    assert plugins.catalog(ANALYSES).get("test.where").target == "named_analyses:where"
    assert "named_analyses" not in sys.modules


def test_bridgehost_plugins_lists_the_analyses(plugins) -> None:
    assert plugins.infos["analysis"].kinds["analysis"] == ["traction.max_force"]
    assert plugins.infos["test"].kinds["analysis"] == ["test.missing", "test.raises", "test.set", "test.where"]
