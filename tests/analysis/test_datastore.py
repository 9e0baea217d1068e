"""The datastore writer and reader, in-process (no child processes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bridgehost_analysis import datastore as ds
from bridgehost_analysis.datastore import (
    ID_PATTERN,
    CorruptData,
    Datastore,
    InvalidId,
    InvalidScript,
    RunNotFound,
    write_atomic,
)
from bridgehost_analysis.jsonvalue import NotJSONError, to_json_value


@pytest.mark.parametrize("value", ["2026-04-20T12-00-00Z", "a", "A.b_c-9", "x" * 128, "1..2"])
def test_valid_ids(store: Datastore, value: str) -> None:
    assert store.run(value, value, value).run_id == value


BAD_IDS = ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "-x", "a b", "x" * 129, "é", "a\n", 7]


@pytest.mark.parametrize("value", BAD_IDS)
@pytest.mark.parametrize("field", ["project_id", "definition_id", "run_id"])
def test_bad_ids_name_the_field_and_pattern(store: Datastore, field: str, value: object) -> None:
    ids = {"project_id": "p", "definition_id": "d", "run_id": "r", field: value}
    with pytest.raises(InvalidId) as info:
        store.run(**ids)
    assert info.value.field == field
    assert field in str(info.value) and ID_PATTERN in str(info.value)


def test_round_trip(store: Datastore) -> None:
    run = store.run("p", "d", "r")
    assert not run.exists()
    run.save(project={"customer": "ACME"}, configuration={"speed": 10.0}, results={"n": 1})
    run.append_cycle({"cycle_index": 1, "actual_load": 498.2})
    run.append_cycle({"cycle_index": 2, "actual_load": 501.1, "tags": ("a", np.int64(3))})
    t = np.linspace(0, 1, 1000, dtype=np.float32)
    run.set_raw_trace(t=t, force=np.arange(1000))  # ints are stored as float64
    run.set_raw_trace("other", v=[1.5, 2.5])
    assert run.exists()
    assert run.path == store.root / "results" / "p" / "d" / "r"
    assert (run.path / "traces" / "trace" / "force.npy").is_file()

    ctx = run.ctx({"limit": 3})
    assert list(ctx) == [
        "project", "configuration", "results", "cycle_history", "raw_data", "run_id", "custom_params",
        "project_id", "definition_id",
    ]  # fmt: skip
    assert ctx["project"] == {"customer": "ACME"}
    assert ctx["configuration"] == {"speed": 10.0}
    assert ctx["results"] == {"n": 1}
    assert ctx["cycle_history"] == [
        {"cycle_index": 1, "actual_load": 498.2},
        {"cycle_index": 2, "actual_load": 501.1, "tags": ["a", 3]},
    ]
    assert set(ctx["raw_data"]) == {"trace", "other"}
    trace = ctx["raw_data"]["trace"]
    assert trace["t"] == t.tolist() and all(type(x) is float for x in trace["t"])
    assert trace["force"] == [float(i) for i in range(1000)] and type(trace["force"][0]) is float
    assert ctx["raw_data"]["other"] == {"v": [1.5, 2.5]}
    assert (ctx["run_id"], ctx["project_id"], ctx["definition_id"]) == ("r", "p", "d")
    assert ctx["custom_params"] == {"limit": 3}

    arrays = run.raw_trace(as_lists=False)
    assert arrays["t"].dtype == np.float32 and arrays["force"].dtype == np.float64
    np.testing.assert_array_equal(arrays["t"], t)


def test_set_raw_trace_replaces_the_whole_trace(store: Datastore) -> None:
    run = store.run("p", "d", "r")
    run.set_raw_trace(t=[0, 1], force=[1, 2], extra=[3, 4])
    run.set_raw_trace(t=[0, 1, 2], force=[5, 6, 7])
    assert run.raw_trace() == {"force": [5.0, 6.0, 7.0], "t": [0.0, 1.0, 2.0]}


@pytest.mark.parametrize(
    ("args", "channels", "error", "match"),
    [
        (("trace",), {}, ValueError, "at least one channel"),
        (("trace",), {"t": [0, 1], "force": [1]}, ValueError, "differ in length"),
        (("trace",), {"t": [[0, 1]]}, ValueError, "1-D"),
        (("trace",), {"t": ["a"]}, ValueError, "numbers"),
        (("../x",), {"t": [0]}, InvalidId, "trace name"),
    ],
)
def test_set_raw_trace_refuses(store: Datastore, args: tuple, channels: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        store.run("p", "d", "r").set_raw_trace(*args, **channels)


def test_missing_run_and_missing_files(store: Datastore) -> None:
    run = store.run("p", "d", "r")
    with pytest.raises(RunNotFound, match="does not exist"):
        run.ctx()
    run.create()
    ctx = run.ctx()
    assert ctx["project"] == {} and ctx["cycle_history"] == [] and ctx["raw_data"] == {}


def test_corrupt_files_are_reported(store: Datastore) -> None:
    run = store.run("p", "d", "r").create()
    (run.path / "project.json").write_text("{not json")
    with pytest.raises(CorruptData, match="project.json"):
        run.project()
    (run.path / "results.json").write_text("[1, 2]")
    with pytest.raises(CorruptData, match="expected a JSON object"):
        run.results()
    (run.path / "traces" / "trace").mkdir(parents=True)
    (run.path / "traces" / "trace" / "force.npy").write_bytes(b"garbage")
    with pytest.raises(CorruptData, match="force.npy"):
        run.raw_data()


def test_torn_cycle_line_is_ignored_then_repaired(store: Datastore) -> None:
    run = store.run("p", "d", "r")
    run.append_cycle({"cycle_index": 1})
    with open(run.path / "cycle_history.jsonl", "ab") as f:
        f.write(b'{"cycle_index": 2, "act')  # an append a crash cut short
    assert run.cycle_history() == [{"cycle_index": 1}]
    run.append_cycle({"cycle_index": 3})
    assert run.cycle_history() == [{"cycle_index": 1}, {"cycle_index": 3}]
    run.set_cycle_history([{"cycle_index": 9}])
    assert run.cycle_history() == [{"cycle_index": 9}]


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_atomic(target, b"old")

    def fail(f: object) -> None:
        f.write(b"half of the new")  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left


def test_every_write_goes_through_write_atomic_or_append_line(store: Datastore, monkeypatch) -> None:
    written: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(ds.os, "replace", lambda a, b: (written.append(Path(b).name), real_replace(a, b)))
    run = store.run("p", "d", "r")
    run.save(project={}, configuration={}, results={})
    run.merge_results({"a": 1})
    run.set_raw_trace(t=[0.0])
    run.set_cycle_history([])
    assert written == [
        "project.json", "configuration.json", "results.json", "results.json", "t.npy", "cycle_history.jsonl"
    ]  # fmt: skip


def test_merge_results(store: Datastore) -> None:
    run = store.run("p", "d", "r")
    run.save_results({"test_duration_s": 45.2, "max_force": 1.0})
    assert run.merge_results({"max_force": 2.0, "avg_force": 1.5}) == {
        "test_duration_s": 45.2, "max_force": 2.0, "avg_force": 1.5
    }  # fmt: skip
    assert run.results() == {"test_duration_s": 45.2, "max_force": 2.0, "avg_force": 1.5}
    with pytest.raises(NotJSONError, match=r"results\['bad'\]"):
        run.merge_results({"bad": float("nan")})
    assert run.results() == {"test_duration_s": 45.2, "max_force": 2.0, "avg_force": 1.5}


@pytest.mark.parametrize(
    ("value", "path", "match"),
    [
        ({"a": {1, 2}}, "result['a']", "set.*sorted"),
        ({"a": [0, float("nan")]}, r"result['a'][1]", "nan"),
        ({"a": float("inf")}, "result['a']", "inf"),
        ({"a": np.zeros(3)}, "result['a']", r"ndarray.*\.tolist\(\)"),
        ({"a": {"b": [1, 2, object()]}}, "result['a']['b'][2]", "object"),
        ({"a": {3: 1}}, "result['a']", "key 3 of type int"),
        ({"a": b"x"}, "result['a']", "bytes"),
    ],
)
def test_to_json_value_names_the_path(value: object, path: str, match: str) -> None:
    with pytest.raises(NotJSONError, match=match) as info:
        to_json_value(value)
    assert info.value.path == path and str(info.value).startswith(path)


def test_to_json_value_converts_numpy_scalars_and_tuples() -> None:
    value = {"a": (np.float32(1.5), np.int64(2), np.bool_(True)), "b": None, "c": "x"}
    assert to_json_value(value) == {"a": [1.5, 2, True], "b": None, "c": "x"}
    assert [type(x) for x in to_json_value(value)["a"]] == [float, int, bool]


def test_script_path(store: Datastore, tmp_path: Path) -> None:
    store.scripts_dir.mkdir(parents=True)
    (store.scripts_dir / "ok.py").write_text("")
    (store.scripts_dir / "sub").mkdir()
    (store.scripts_dir / "sub" / "nested.py").write_text("")
    outside = tmp_path / "outside.py"
    outside.write_text("")
    (store.scripts_dir / "link.py").symlink_to(outside)
    (store.scripts_dir / "inner.py").symlink_to("ok.py")
    assert store.script_path("ok.py") == (store.scripts_dir / "ok.py").resolve()
    assert store.script_path("sub/nested.py").name == "nested.py"
    assert store.script_path("inner.py").name == "ok.py"  # a link that stays inside is fine
    for name, match in [
        ("../outside.py", "without '..'"),
        ("sub/../../outside.py", "without '..'"),
        (str(outside), "relative"),
        ("link.py", "leads out of the scripts folder"),
        ("ok.txt", "ending in '.py'"),
        ("missing.py", "not found"),
        ("", "non-empty"),
    ]:
        with pytest.raises(InvalidScript, match=match):
            store.script_path(name)


def test_scripts_folder_may_be_a_link(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.py").write_text("")
    store = Datastore(tmp_path / "ds")
    store.root.mkdir()
    store.scripts_dir.symlink_to(shared)
    assert store.script_path("a.py") == (shared / "a.py").resolve()


def test_install_script_keeps_identical_links(tmp_path: Path) -> None:
    source = tmp_path / "s.py"
    source.write_text("x = 1\n")
    store = Datastore(tmp_path / "ds")
    store.scripts_dir.mkdir(parents=True)
    (store.scripts_dir / "s.py").symlink_to(source)
    store.install_script(source)
    assert (store.scripts_dir / "s.py").is_symlink()
    assert store.install_script(source, "copy.py").read_text() == "x = 1\n"
