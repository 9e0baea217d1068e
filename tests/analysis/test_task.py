"""The analysis task with real child processes: requests, ctx, results."""

from __future__ import annotations

import msgspec
import pytest

from bridgehost.config import parse_config
from bridgehost.errors import ConfigError, InvalidRequest, IOFailure, TaskCrashed
from bridgehost.jobs import Status
from bridgehost.plugins import load_plugins
from bridgehost.registry import Kind, Registry
from bridgehost_analysis import plugin
from bridgehost_analysis.datastore import CorruptData
from bridgehost_analysis.task import AnalysisTask, AnalysisTaskConfig

CTX_TYPES = """
def calculate_results(ctx):
    return {
        "keys": list(ctx),
        "types": {k: type(v).__name__ for k, v in ctx.items()},
        "ctx": ctx,
    }
"""


def test_ctx_has_the_manuals_structure(run, script, make_task, analyse) -> None:
    name = script("show_ctx.py", CTX_TYPES)
    out = analyse(make_task(), run.request(name, custom_params={"limit": 400.0}))
    assert out["keys"] == [
        "project", "configuration", "results", "cycle_history", "raw_data", "run_id", "custom_params",
        "project_id", "definition_id",
    ]  # fmt: skip
    assert out["types"] == {
        "project": "dict", "configuration": "dict", "results": "dict", "cycle_history": "list",
        "raw_data": "dict", "run_id": "str", "custom_params": "dict", "project_id": "str", "definition_id": "str",
    }  # fmt: skip
    # The example ctx of AutoCore's manual, "Python Analysis Integration", value for value.
    assert out["ctx"] == {
        "project": {"customer": "ACME Corp", "operator": "John Doe"},
        "configuration": {"control_load": 500.0, "speed": 10.0},
        "results": {"test_duration_s": 45.2},
        "cycle_history": [{"cycle_index": 1, "actual_load": 498.2}, {"cycle_index": 2, "actual_load": 501.1}],
        "raw_data": {"trace": {"t": [0.0, 0.1, 0.2, 0.3], "force": [0.0, 100.5, 200.1, 300.8]}},
        "run_id": "2026-04-20T12-00-00Z",
        "custom_params": {"limit": 400.0},
        "project_id": "acme",
        "definition_id": "traction",
    }


def test_traces_as_arrays(run, script, make_task, analyse) -> None:
    name = script(
        "arrays.py",
        """
        def calculate_results(ctx):
            force = ctx["raw_data"]["trace"]["force"]
            return {"type": type(force).__name__, "dtype": str(force.dtype), "max": force.max()}
        """,
    )
    out = analyse(make_task(raw_data="arrays"), run.request(name))
    assert out == {"type": "ndarray", "dtype": "float64", "max": 300.8}


def test_default_function_and_other_function(run, script, make_task, analyse) -> None:
    name = script("two.py", "def calculate_results(ctx): return {'f': 1}\ndef other(ctx): return {'f': 2}\n")
    params = run.request(name)
    del params["function"], params["custom_params"]
    task = make_task()
    assert analyse(task, params) == {"f": 1}
    assert analyse(task, {**params, "function": "other"}) == {"f": 2}


def test_no_state_leaks_between_runs(run, script, make_task, analyse) -> None:
    name = script(
        "counter.py",
        """
        import sys
        COUNT = 0
        def calculate_results(ctx):
            global COUNT
            COUNT += 1
            sys.modules.setdefault("leak_marker", object())
            mods = [m for m in sys.modules if m.startswith("bridgehost_script_")]
            return {"count": COUNT, "script_modules": mods}
        """,
    )
    task = make_task()
    first = analyse(task, run.request(name))
    second = analyse(task, run.request(name))
    assert first["count"] == second["count"] == 1
    assert len(first["script_modules"]) == len(second["script_modules"]) == 1
    assert first["script_modules"] != second["script_modules"]  # a unique module name each run


def test_prints_do_not_corrupt_the_result(run, script, make_task, analyse) -> None:
    name = script(
        "noisy.py",
        """
        import os, sys
        def calculate_results(ctx):
            print("hello stdout", "{" * 100)
            print("hello stderr", file=sys.stderr)
            os.write(1, b"raw fd 1\\n")
            return {"ok": True}
        """,
    )
    assert analyse(make_task(), run.request(name)) == {"ok": True}


@pytest.mark.parametrize(
    ("ret", "match"),
    [
        ("[1, 2]", "must return a dict, it returned a list"),
        ("None", "must return a dict, it returned None"),
        ("{'stats': [1, 2, {3}]}", r"result\['stats'\]\[2\] is a set"),
        ("{'v': float('nan')}", r"result\['v'\] is nan"),
        ("{'v': __import__('numpy').arange(3)}", r"result\['v'\] is a ndarray.*\.tolist\(\)"),
        ("{'v': object()}", r"result\['v'\] is a object"),
    ],
)
def test_bad_returns_name_the_key_and_type(run, script, make_task, analyse, ret: str, match: str) -> None:
    name = script("bad.py", f"def calculate_results(ctx):\n    return {ret}\n")
    with pytest.raises(TaskCrashed, match=match) as info:
        analyse(make_task(), run.request(name))
    assert info.value.status is Status.CRASH


def test_numpy_scalars_are_converted(run, script, make_task, analyse) -> None:
    name = script(
        "np_scalars.py",
        """
        import numpy as np
        def calculate_results(ctx):
            force = np.asarray(ctx["raw_data"]["trace"]["force"])
            return {"max": force.max(), "n": np.int64(force.size), "big": (force > 0).any(), "items": (1, "a")}
        """,
    )
    assert analyse(make_task(), run.request(name)) == {"max": 300.8, "n": 4, "big": True, "items": [1, "a"]}


def test_result_over_max_result_bytes(run, script, make_task, analyse) -> None:
    name = script("big.py", "def calculate_results(ctx):\n    return {'x': 'a' * 5000}\n")
    with pytest.raises(TaskCrashed, match="over max_result_bytes"):
        analyse(make_task(max_result_bytes=1024), run.request(name))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bogus": 1, "zz": 2}, "unknown request field.*'bogus', 'zz'"),
        ({"script": 3}, "request field 'script': expected str, got int"),
        ({"custom_params": []}, "request field 'custom_params'"),
        ({"function": "not-a-name"}, "not a Python function name"),
        ({"run_id": ".."}, "run_id '..' is not valid"),
        ({"project_id": "a/b"}, "project_id 'a/b' is not valid"),
        ({"definition_id": ""}, "definition_id '' is not valid"),
        ({"script": "../x.py"}, "without '..'"),
        ({"script": "/etc/passwd.py"}, "relative"),
        ({"script": "missing.py"}, "not found"),
        ({"custom_params": {"x": float("nan")}}, r"custom_params\['x'\] is nan"),
    ],
)
def test_bad_requests_are_rejected(run, script, make_task, analyse, change: dict, match: str) -> None:
    script("ok.py", "def calculate_results(ctx):\n    return {}\n")
    with pytest.raises(InvalidRequest, match=match) as info:
        analyse(make_task(), {**run.request("ok.py"), **change})
    assert info.value.status is Status.REJECTED


def test_missing_fields_are_rejected(make_task, analyse) -> None:
    with pytest.raises(InvalidRequest, match="missing request field.*'script', 'project_id'"):
        analyse(make_task(), {"definition_id": "d", "run_id": "r"})


def test_symlink_out_of_scripts_is_rejected(run, store, tmp_path, make_task, analyse) -> None:
    outside = tmp_path / "evil.py"
    outside.write_text("def calculate_results(ctx):\n    return {}\n")
    store.scripts_dir.mkdir(exist_ok=True)
    (store.scripts_dir / "evil.py").symlink_to(outside)
    with pytest.raises(InvalidRequest, match="leads out of the scripts folder"):
        analyse(make_task(), run.request("evil.py"))


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("a" * 300 + ".py", "File name too long"),  # longer than NAME_MAX (255)
        ("a/" * 2100 + "x.py", "File name too long"),  # longer than PATH_MAX (4096)
        ("loop.py", "loop"),  # a link to itself
    ],
)
def test_a_script_name_the_file_system_refuses_is_rejected_naming_it(run, store, make_task, analyse, name, match) -> None:
    store.scripts_dir.mkdir(exist_ok=True)
    (store.scripts_dir / "loop.py").symlink_to("loop.py")
    with pytest.raises(InvalidRequest, match=rf"script '{name[:20]}.*cannot be looked up in .*scripts.*{match}") as info:
        analyse(make_task(), run.request(name))
    assert info.value.status is Status.REJECTED  # the request's, not a CRASH of the host's code
    from bridgehost_analysis.batch import BadBatch, Options, reanalyze

    with pytest.raises(BadBatch, match=rf"--script: script '{name[:20]}.*cannot be looked up"):
        reanalyze(Options(datastore=store.root, script=name, progress=False))


def test_unknown_function_is_rejected(run, script, make_task, analyse) -> None:
    name = script("f.py", "def calculate_results(ctx):\n    return {}\ndef helper():\n    pass\n")
    with pytest.raises(InvalidRequest, match="defines no function 'nope'.*calculate_results, helper"):
        analyse(make_task(), run.request(name, function="nope"))


def test_missing_run_is_an_io_failure(store, script, make_task, analyse) -> None:
    name = script("ok.py", "def calculate_results(ctx):\n    return {}\n")
    with pytest.raises(IOFailure, match="does not exist") as info:
        analyse(make_task(), store.run("p", "d", "nope").request(name))
    assert info.value.status is Status.IO_FAILURE


def test_corrupt_run_is_an_io_failure(run, script, make_task, analyse) -> None:
    name = script("ok.py", "def calculate_results(ctx):\n    return {}\n")
    (run.path / "configuration.json").write_text("{")
    with pytest.raises(IOFailure, match="configuration.json: not valid JSON"):
        analyse(make_task(), run.request(name))


def test_save_results_merges_and_a_failing_run_leaves_results_untouched(run, script, make_task, analyse) -> None:
    good = script("good.py", "def calculate_results(ctx):\n    return {'max_force': 300.8, 'avg_force': 150.35}\n")
    bad = script("bad.py", "def calculate_results(ctx):\n    return {'max_force': 1 / 0}\n")
    nan = script("nan.py", "def calculate_results(ctx):\n    return {'max_force': float('nan')}\n")
    task = make_task(save_results=True)
    expected = {"test_duration_s": 45.2, "max_force": 300.8, "avg_force": 150.35}
    assert analyse(task, run.request(good)) == {"max_force": 300.8, "avg_force": 150.35}
    assert run.results() == expected
    before = (run.path / "results.json").read_bytes()
    for name in (bad, nan):
        with pytest.raises(TaskCrashed):
            analyse(task, run.request(name))
    assert (run.path / "results.json").read_bytes() == before
    # Without save_results nothing is written.
    script("other.py", "def calculate_results(ctx):\n    return {'max_force': 0.0}\n")
    analyse(make_task(), run.request("other.py"))
    assert run.results() == expected


def test_config_defaults_and_constraints() -> None:
    cfg = msgspec.convert({"kind": "analysis", "name": "python.run_analysis"}, AnalysisTaskConfig)
    assert (cfg.datastore, cfg.timeout_s, cfg.memory_limit_mb, cfg.save_results) == ("./datastore", 60.0, 2048, False)
    for bad in ({"memory_limit_mb": 1}, {"max_result_bytes": 0}, {"raw_data": "frames"}, {"datastor": "x"}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"kind": "analysis", "name": "t", **bad}, AnalysisTaskConfig)


@pytest.mark.parametrize(("old", "new"), [("max_output_bytes", "output_kept_bytes"), ("output_limit_bytes", "output_kill_bytes")])
def test_a_renamed_key_is_refused_naming_the_new_one(old: str, new: str) -> None:
    plugins = load_plugins(load=["analysis"])
    raw = {"tasks": [{"kind": "analysis", "name": "t", old: 1000}]}
    with pytest.raises(ConfigError, match=rf"tasks\[0\]\.{old}: '{old}' was renamed '{new}'") as e:
        parse_config(raw, plugins, source="rig.toml")
    assert new in e.value.hint
    raw = {"tasks": [{"kind": "analysis", "name": "t"}]}
    var = f"BRIDGEHOST__TASKS__0__{old.upper()}"
    with pytest.raises(ConfigError, match=f"'{old}' was renamed '{new}'") as e:
        parse_config(raw, plugins, source="rig.toml", environ={var: "1000"})
    assert e.value.key == var and f"BRIDGEHOST__TASKS__0__{new.upper()}" in e.value.hint
    config = parse_config({"tasks": [{"kind": "analysis", "name": "t", new: 1000}]}, plugins)
    assert getattr(config.tasks[0], new) == 1000


def test_plugin_registers_the_analysis_kind() -> None:
    registry = Registry(Kind.TASK)
    plugin.register_tasks(registry.for_plugin("analysis"))
    entry = registry.get("analysis")
    assert entry.factory is AnalysisTask and entry.config is AnalysisTaskConfig and entry.plugin == "analysis"


def test_failed_merge_is_an_io_failure_with_the_result(run, script, make_task, analyse, monkeypatch) -> None:
    name = script("good.py", "def calculate_results(ctx):\n    return {'max_force': 1.0}\n")

    def broken(self, results, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(run), "merge_results", broken)
    with pytest.raises(IOFailure, match="merging its result.*No space left") as info:
        analyse(make_task(save_results=True), run.request(name))
    assert info.value.data == {"result": {"max_force": 1.0}}
    assert run.results() == {"test_duration_s": 45.2}


def test_every_analysis_has_a_finite_timeout_and_a_bounded_prefork(make_task) -> None:
    plugins = load_plugins(load=["analysis"])
    raw = {"tasks": [{"kind": "analysis", "name": "t"}]}
    var = "BRIDGEHOST__TASKS__0__TIMEOUT_S"
    with pytest.raises(ConfigError, match=r"<= 2592000\.0") as e:
        parse_config(raw, plugins, source="rig.toml", environ={var: "inf"})
    assert e.value.key == "tasks[0].timeout_s" and var in e.value.message
    with pytest.raises(msgspec.ValidationError, match="timeout_s"):  # None, which only Python can pass
        msgspec.convert({"kind": "analysis", "name": "t", "timeout_s": None}, AnalysisTaskConfig)
    assert make_task(concurrency=200).runner.prefork == 64  # not 201 waiting processes


def test_a_datastore_that_is_a_file_is_named_as_such(tmp_path, make_task) -> None:
    (tmp_path / "datastore").write_text("root:x:0:0::/root:/bin/sh\n")  # datastore = "/etc/passwd", say
    task = make_task()
    assert task.check() == [
        (
            f"datastore {task.store.root} is a file, not a folder: every request will fail; "
            "set datastore to the folder that holds scripts/ and results/"
        )
    ]


def nested(depth: int) -> str:
    return '{"deep": ' + "[" * depth + "]" * depth + "}"


def test_deeply_nested_run_files_are_read_merged_or_named_never_a_crash(run, script, make_task, analyse) -> None:
    name = script("good.py", "def calculate_results(ctx):\n    return {'max_force': 1.0}\n")
    task = make_task(save_results=True)
    # Nested deeper than to_json_value goes, not deeper than msgspec reads: read, and merged as it is.
    (run.path / "results.json").write_text(nested(700))
    assert analyse(task, run.request(name)) == {"max_force": 1.0}
    saved = run.results()
    assert saved["max_force"] == 1.0 and saved["deep"] == msgspec.json.decode(nested(700))["deep"]
    # Deeper than anything reads: the file is named, as for any file that does not decode (not "the script raised").
    (run.path / "results.json").write_text(nested(5000))
    with pytest.raises(IOFailure, match=r"results\.json: nested too deeply"):
        analyse(task, run.request(name))
    with pytest.raises(CorruptData, match=r"results\.json: nested too deeply"):
        run.results()


def test_a_merge_past_max_saved_results_bytes_is_refused_and_leaves_results_json_as_it_was(
    run, script, make_task, analyse
) -> None:
    # A script returning a new key on every request grew results.json by its
    # result each time, without bound (and the host read and rewrote it all).
    name = script("grow.py", "import uuid\ndef calculate_results(ctx):\n    return {str(uuid.uuid4()): 'x' * 3000}\n")
    task = make_task(save_results=True, max_saved_results_bytes=8192)
    for _ in range(2):
        analyse(task, run.request(name))
    saved = (run.path / "results.json").read_bytes()
    assert 6000 < len(saved) <= 8192 and len(run.results()) == 3
    for _ in range(2):
        with pytest.raises(IOFailure) as info:
            analyse(task, run.request(name))
        message = str(info.value)
        assert str(run.path / "results.json") in message and "would become" in message
        assert "max_saved_results_bytes (8192 bytes)" in message and "raise max_saved_results_bytes" in message
        assert list(info.value.data["result"].values()) == ["x" * 3000]  # the result is in the reply
        assert (run.path / "results.json").read_bytes() == saved
    # One already over the bound (written by another writer) is refused without being read.
    run.save_results({"big": "y" * 9000})
    before = (run.path / "results.json").read_bytes()
    with pytest.raises(IOFailure, match="is already 90[0-9]{2} bytes, over max_saved_results_bytes"):
        analyse(task, run.request(name))
    assert (run.path / "results.json").read_bytes() == before
    for bad in (1023, (1 << 30) + 1):
        with pytest.raises(msgspec.ValidationError, match="max_saved_results_bytes"):
            msgspec.convert({"kind": "analysis", "name": "t", "max_saved_results_bytes": bad}, AnalysisTaskConfig)
    assert msgspec.convert({"kind": "analysis", "name": "t"}, AnalysisTaskConfig).max_saved_results_bytes == 64 << 20
