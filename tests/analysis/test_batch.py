"""bridgehost reanalyze, local executor: selection, provenance, skip/force/
resume, output formats, exit codes and messages. Every run goes through a
real zygote and a fresh child; the command is run as a real subprocess
where the behaviour is the command's (exit codes, signals)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

from bridgehost_analysis.batch import BadBatch, Options, read_run_list, reanalyze, scan
from bridgehost_analysis.batch.provenance import RECORDS_DIR, Record
from bridgehost_analysis.batch.selection import BadRunList, RunKey
from bridgehost_analysis.datastore import Datastore

COUNT = """
def calculate_results(ctx):
    if ctx["run_id"].endswith("3"):
        raise ValueError("no good: " + ctx["run_id"])
    return {"n": len(ctx["cycle_history"]), "limit": ctx["custom_params"].get("limit"), "nested": {"a": [1, 2]}}
"""
SLOW = """
import time
def calculate_results(ctx):
    time.sleep(0.3)
    return {"run": ctx["run_id"], "value": 1.5}
"""


def make_store(root: Path, projects: dict[str, int], script: str = COUNT) -> Datastore:
    store = Datastore(root)
    store.scripts_dir.mkdir(parents=True, exist_ok=True)
    (store.scripts_dir / "count.py").write_text(textwrap.dedent(script))
    for project, count in projects.items():
        for i in range(count):
            run = store.run(project, "traction", f"r{i:02d}")
            run.save(project={"customer": project})
            run.append_cycle({"cycle_index": 1})
    return store


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, os.environ.get("BH_CLI", "-m"), *([] if os.environ.get("BH_CLI") else ["bridgehost.cli"]), "reanalyze", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- selection ---------------------------------------------------------------


def test_scan_selects_by_glob_and_skips_what_is_not_a_run(tmp_path: Path) -> None:
    store = make_store(tmp_path, {"acme": 3, "beta": 2})
    (store.results_dir / "acme" / "traction" / ".hidden").mkdir()  # not an id: not a run
    (store.results_dir / "acme" / "traction" / "notes.txt").write_text("x")  # a file: not a run
    store.run("acme", "slip", "s1").save(project={})
    assert sorted(map(str, scan(store))) == sorted(
        [f"acme/traction/r0{i}" for i in range(3)] + ["acme/slip/s1"] + [f"beta/traction/r0{i}" for i in range(2)]
    )
    assert sorted(map(str, scan(store, "a*", "traction", "r0[12]"))) == ["acme/traction/r01", "acme/traction/r02"]
    assert list(scan(store, "acme", "slip", "s1")) == [RunKey("acme", "slip", "s1")]
    assert list(scan(store, "nobody")) == []


def test_run_list_names_the_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "runs.txt"
    good.write_text("# runs to redo\nacme/traction/r01\n\nbeta/traction/r00\n")
    assert list(read_run_list(good)) == [RunKey("acme", "traction", "r01"), RunKey("beta", "traction", "r00")]
    bad = tmp_path / "bad.txt"
    bad.write_text("acme/traction/r01\nacme/../etc\n")
    with pytest.raises(BadRunList, match=r"bad.txt, line 2: .*'\.\.'"):
        list(read_run_list(bad))
    bad.write_text("acme/r01\n")
    with pytest.raises(BadRunList, match="line 1: 'acme/r01' is not project/definition/run"):
        list(read_run_list(bad))


def test_a_run_list_from_another_tool_is_read_or_refused_naming_the_line(tmp_path: Path) -> None:
    listed = tmp_path / "runs.txt"
    listed.write_bytes("\ufeffacme/traction/r01\r\n# a note\r\nbeta/traction/r00\r\n".encode())  # Notepad: BOM, CRLF
    assert list(read_run_list(listed)) == [RunKey("acme", "traction", "r01"), RunKey("beta", "traction", "r00")]
    listed.write_bytes(b"acme/traction/r01\nPAR1\x15\x04\x15\xb0\xff\xfe\n")  # e.g. a Parquet output given by mistake
    with pytest.raises(BadRunList, match=r"runs.txt, line 2 is not UTF-8 text"):
        list(read_run_list(listed))
    listed.write_bytes(b"acme/traction/r01\n" + b"a" * (8 << 20))  # one 8 MB line: refused without reading it whole
    with pytest.raises(BadRunList, match=r"runs.txt, line 2 is longer than 4096 characters"):
        list(read_run_list(listed))
    listed.write_bytes(b"#" * (8 << 20) + b"\nacme/traction/r01\n")  # a long comment is still a comment
    assert list(read_run_list(listed)) == [RunKey("acme", "traction", "r01")]


def test_command_refuses_unreadable_input_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 1})
    binary = tmp_path / "runs.parquet"
    binary.write_bytes(b"PAR1\x15\x04\x15\xb0\xff\xfe\x00")
    listed = cli(str(store.root), "--script", "count.py", "--runs-from", str(binary))
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert f"--runs-from: {binary}, line 1 is not UTF-8 text" in listed.stderr
    deep = cli(str(store.root), "--script", "count.py", "--custom-params", '{"a":' + "[" * 5000 + "]" * 5000 + "}")
    assert deep.returncode == 2 and "Traceback" not in deep.stderr
    assert "--custom-params: nested too deeply" in deep.stderr


# -- a batch -----------------------------------------------------------------


def test_batch_records_provenance_outputs_rows_and_goes_on_after_a_crash(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 6, "beta": 4})
    out = tmp_path / "out.csv"
    summary = reanalyze(
        Options(datastore=store.root, script="count.py", custom_params={"limit": 4}, output=out, workers=3, progress=False)
    )
    # r03 raises in both projects: two CRASH rows, the other eight succeed.
    assert (summary.ok, summary.failed, summary.skipped, summary.exit_code) == (8, {"CRASH": 2}, 0, 1)
    with open(out, newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert len(rows) == 10
    assert rows["acme/traction/r01"]["status"] == "SUCCESS"
    assert rows["acme/traction/r01"]["n"] == "1" and rows["acme/traction/r01"]["limit"] == "4"
    assert json.loads(rows["acme/traction/r01"]["nested"]) == {"a": [1, 2]}  # nested values as JSON text
    assert rows["beta/traction/r03"]["status"] == "CRASH"
    assert "raised ValueError: no good: r03" in rows["beta/traction/r03"]["error"]
    assert rows["beta/traction/r03"]["n"] == ""

    run = store.run("acme", "traction", "r01")
    assert run.results() == {}  # without --save, results.json is not touched
    [record_file] = (run.path / RECORDS_DIR).iterdir()
    record = msgspec.json.decode(record_file.read_bytes(), type=Record)
    assert record.status == "SUCCESS" and msgspec.json.decode(record.result) == {"n": 1, "limit": 4, "nested": {"a": [1, 2]}}
    p = record.provenance
    assert p.script == "count.py" and p.function == "calculate_results"
    assert p.script_sha256 == __import__("hashlib").sha256((store.scripts_dir / "count.py").read_bytes()).hexdigest()
    assert len(p.custom_params_sha256) == 64 and p.bridgehost_version
    assert record.started_utc.endswith("Z") and record.duration_s > 0


def test_rerun_skips_force_recomputes_and_a_changed_script_or_params_recompute(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 4})
    opts = dict(datastore=store.root, script="count.py", workers=2, progress=False)
    first = reanalyze(Options(**opts, output=tmp_path / "1.jsonl"))
    assert (first.ok, first.failed) == (3, {"CRASH": 1})
    again = reanalyze(Options(**opts, output=tmp_path / "2.jsonl"))
    # The three successes are skipped (their stored rows reported); the crash is tried again.
    assert (again.ok, again.skipped, again.failed) == (0, 3, {"CRASH": 1})
    rows = {r["run"]: r for r in rows_of(tmp_path / "2.jsonl")}
    assert len(rows) == 4 and rows["acme/traction/r00"]["skipped"] is True and rows["acme/traction/r00"]["n"] == 1
    forced = reanalyze(Options(**opts, force=True))
    assert (forced.ok, forced.skipped) == (3, 0)
    other_params = reanalyze(Options(**opts, custom_params={"limit": 1}))
    assert (other_params.ok, other_params.skipped) == (3, 0)
    (store.scripts_dir / "count.py").write_text(textwrap.dedent(COUNT) + "\n# the math changed\n")
    changed = reanalyze(Options(**opts))
    assert (changed.ok, changed.skipped) == (3, 0)


def test_save_merges_results_and_a_failed_run_never_touches_them(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 4})
    for i in range(4):
        store.run("acme", "traction", f"r{i:02d}").save_results({"test_duration_s": 45.2})
    unsaved = reanalyze(Options(datastore=store.root, script="count.py", progress=False))
    assert unsaved.ok == 3
    saved = reanalyze(Options(datastore=store.root, script="count.py", save=True, progress=False))
    assert saved.ok == 3 and saved.skipped == 0  # done, but not saved: --save runs them again
    assert store.run("acme", "traction", "r00").results() == {
        "test_duration_s": 45.2, "n": 1, "limit": None, "nested": {"a": [1, 2]}
    }
    assert store.run("acme", "traction", "r03").results() == {"test_duration_s": 45.2}
    assert reanalyze(Options(datastore=store.root, script="count.py", save=True, progress=False)).skipped == 3


def test_parquet_output(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    store = make_store(tmp_path / "ds", {"acme": 4})
    reanalyze(Options(datastore=store.root, script="count.py", output=tmp_path / "o.parquet", progress=False))
    table = pq.read_table(tmp_path / "o.parquet")
    rows = {r["run"]: r for r in table.to_pylist()}
    assert table.schema.field("n").type == "int64" and table.schema.field("nested").type == "string"
    assert rows["acme/traction/r00"]["n"] == 1 and json.loads(rows["acme/traction/r00"]["nested"]) == {"a": [1, 2]}
    assert rows["acme/traction/r03"]["status"] == "CRASH" and rows["acme/traction/r03"]["n"] is None


def test_named_analysis_records_its_distribution(tmp_path: Path) -> None:
    from bridgehost_analysis.traction import generate_run

    for i in range(2):
        generate_run(tmp_path / "ds", run_id=f"t{i}", samples=2000, cycles=3)
    summary = reanalyze(Options(datastore=tmp_path / "ds", analysis="traction.max_force", output=tmp_path / "o.jsonl", progress=False))
    assert summary.ok == 2
    assert all(r["max_force"] > 400 for r in rows_of(tmp_path / "o.jsonl"))
    run = Datastore(tmp_path / "ds").run("acme-traction", "translational-traction", "t0")
    [record_file] = (run.path / RECORDS_DIR).iterdir()
    p = msgspec.json.decode(record_file.read_bytes(), type=Record).provenance
    assert (p.analysis, p.distribution, p.script_sha256) == ("traction.max_force", "bridgehost-analysis", None)
    assert p.version


def test_bad_options_name_what_is_wrong(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 2})
    with pytest.raises(BadBatch, match=r"no run matched --project 'nobody\*' --definition '\*' --run '\*'"):
        reanalyze(Options(datastore=store.root, script="count.py", project="nobody*"))
    with pytest.raises(BadBatch, match=r"--script.*missing\.py"):
        reanalyze(Options(datastore=store.root, script="missing.py"))
    with pytest.raises(BadBatch, match=r"--output.*unknown format '\.xlsx'"):
        reanalyze(Options(datastore=store.root, script="count.py", output=tmp_path / "o.xlsx"))


def test_a_zygote_that_cannot_start_ends_the_batch_with_its_reason(tmp_path: Path) -> None:
    from bridgehost_analysis.batch.core import BatchFailed

    store = make_store(tmp_path / "ds", {"acme": 1})
    with pytest.raises(BatchFailed, match="could not start: preload: importing 'no_such_module_q' failed"):
        reanalyze(Options(datastore=store.root, script="count.py", progress=False, task={"preload": ["no_such_module_q"]}))
    assert not list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}/*.json"))


# -- the command ---------------------------------------------------------------


def test_command_exit_codes_and_messages(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 4})
    ok = cli(str(store.root), "--script", "count.py", "--run", "r0[01]", "--output", str(tmp_path / "o.jsonl"))
    assert ok.returncode == 0, ok.stderr
    summary = ok.stdout.strip().splitlines()[-1]
    assert summary.startswith("reanalyze: 2 ok, 0 failed, 0 skipped;") and summary.endswith("runs/s")
    nothing = cli(str(store.root), "--script", "count.py", "--project", "nobody", "--run", "x*")
    assert nothing.returncode == 2
    assert "no run matched --project 'nobody' --definition '*' --run 'x*'" in nothing.stderr
    unknown = cli(str(store.root), "--analysis", "traction.nope")
    assert unknown.returncode == 2 and "traction.nope" in unknown.stderr and "traction.max_force" in unknown.stderr
    listed = tmp_path / "runs.txt"
    listed.write_text("acme/traction/r02\nacme/traction/r03\nacme/traction/r99\n")  # ok, raises, no folder
    failed = cli(str(store.root), "--script", "count.py", "--runs-from", str(listed), "--output", str(tmp_path / "l.jsonl"))
    assert failed.returncode == 1
    statuses = {r["run"]: r["status"] for r in rows_of(tmp_path / "l.jsonl")}
    assert statuses == {"acme/traction/r02": "SUCCESS", "acme/traction/r03": "CRASH", "acme/traction/r99": "IO_FAILURE"}
    assert "reanalyze: 1 ok, 2 failed (CRASH 1, IO_FAILURE 1), 0 skipped;" in failed.stdout


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_batch_resumes_without_losing_or_duplicating_a_row(tmp_path: Path, how: signal.Signals) -> None:
    store = make_store(tmp_path / "ds", {"acme": 24}, script=SLOW)
    out = tmp_path / "out.jsonl"
    args = [str(store.root), "--script", "count.py", "--workers", "2", "--output", str(out), "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, os.environ.get("BH_CLI", "-m"), *([] if os.environ.get("BH_CLI") else ["bridgehost.cli"]), "reanalyze", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(list(store.results_dir.glob(f"acme/traction/*/{RECORDS_DIR}/*.json"))) < 4:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(how)
    stdout, _ = proc.communicate(timeout=60)
    recorded = {p.parts[-3] for p in store.results_dir.glob(f"acme/traction/*/{RECORDS_DIR}/*.json")}
    assert 4 <= len(recorded) < 24
    if how == signal.SIGINT:
        assert proc.returncode == 1
        summary = stdout.strip().splitlines()[-1]
        assert f"reanalyze: {len(recorded)} ok" in summary and "not run (interrupted" in summary
        assert sorted(r["run"].split("/")[-1] for r in rows_of(out)) == sorted(recorded)  # what finished is written
        assert not list(tmp_path.glob("*.partial"))
    else:
        assert proc.returncode == -signal.SIGKILL
    # No process of the batch is left (the zygote and its children die with it).
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(store.root)], capture_output=True, text=True).stdout.split()
    assert not left
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    rows = rows_of(out)
    assert sorted(r["run"] for r in rows) == sorted(f"acme/traction/r{i:02d}" for i in range(24))  # each run once
    assert sum(r["skipped"] for r in rows) == len(recorded)
    assert all(r["status"] == "SUCCESS" and r["value"] == 1.5 for r in rows)


# -- what a script returns, in every output format ---------------------------------

AWKWARD = """
def calculate_results(ctx):
    first = ctx["run_id"] == "r00"
    return {
        "big": 2**100 if first else 5,           # beyond int64
        "huge": 10**400 if first else 0.5,       # beyond float64, among floats
        "run": "returned run",                  # a fixed column's name
        "result.run": "returned result.run",    # what that one is renamed to
        "a,b\\nc": "comma and newline",
    }
"""


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_returned_value_reaches_every_output_format_exactly(tmp_path: Path, suffix: str) -> None:
    if suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
    store = make_store(tmp_path / "ds", {"acme": 2}, script=AWKWARD)
    out = tmp_path / f"o{suffix}"
    summary = reanalyze(Options(datastore=store.root, script="count.py", output=out, progress=False))
    assert (summary.ok, summary.exit_code) == (2, 0)
    if suffix == ".csv":
        with open(out, newline="") as f:
            rows = {r["run"]: r for r in csv.DictReader(f)}
    elif suffix == ".jsonl":
        rows = {r["run"]: r for r in rows_of(out)}
    else:
        rows = {r["run"]: r for r in pq.read_table(out).to_pylist()}
    first, second = rows["acme/traction/r00"], rows["acme/traction/r01"]
    # Integers too large for a Parquet int64 or float64 column are kept whole (as decimal text there).
    assert int(first["big"]) == 2**100 and int(second["big"]) == 5
    assert int(first["huge"]) == 10**400 and float(second["huge"]) == 0.5
    # Renamed keys never share a column: each value is where its key says.
    assert first["result.run"] == "returned run" and first["result.result.run"] == "returned result.run"
    assert first["a,b\nc"] == "comma and newline"
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.tmp"))


# -- where the output goes ---------------------------------------------------------


def test_an_output_that_cannot_be_written_is_refused_before_any_run(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 2})
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(BadBatch, match=r"--output .*taken\.csv.* is a folder"):
        reanalyze(Options(datastore=store.root, script="count.py", output=tmp_path / "taken.csv", progress=False))
    history = store.run("acme", "traction", "r00").path / "cycle_history.jsonl"
    with pytest.raises(BadBatch, match=r"--output: .* is inside the datastore's results/"):
        reanalyze(Options(datastore=store.root, script="count.py", output=history, progress=False))
    assert store.run("acme", "traction", "r00").cycle_history() == [{"cycle_index": 1}]
    assert not list(store.results_dir.glob(f"*/*/*/{RECORDS_DIR}"))  # no run started


HELD = """
import os, time
def calculate_results(ctx):
    while os.path.exists(os.path.join(os.path.dirname(__file__), "hold")):  # scripts/ is readable by a run
        time.sleep(0.02)
    return {"value": 1}
"""


def test_a_second_batch_on_the_same_output_is_refused_and_the_first_keeps_every_row(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 6}, script=HELD)
    (store.scripts_dir / "fast.py").write_text("def calculate_results(ctx):\n    return {'value': 2}\n")
    hold = store.scripts_dir / "hold"
    hold.touch()
    out = tmp_path / "out.jsonl"
    args = [str(store.root), "--workers", "2", "--output", str(out), "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, os.environ.get("BH_CLI", "-m"), *([] if os.environ.get("BH_CLI") else ["bridgehost.cli"]),
         "reanalyze", "--script", "count.py", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out.jsonl.partial").exists():  # the first batch's output is open, its runs held
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = cli("--script", "fast.py", *args)
        assert second.returncode == 2, second.stderr
        assert "--output" in second.stderr and "another batch is writing it" in second.stderr
    finally:
        hold.unlink()
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    rows = rows_of(out)
    assert sorted(r["run"] for r in rows) == sorted(f"acme/traction/r{i:02d}" for i in range(6))
    assert all(r["value"] == 1 for r in rows)


def test_an_output_that_fails_at_the_end_says_where_its_rows_are(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 3}, script=HELD)
    hold = store.scripts_dir / "hold"
    hold.touch()
    out = tmp_path / "out.jsonl"
    batch = subprocess.Popen(
        [sys.executable, os.environ.get("BH_CLI", "-m"), *([] if os.environ.get("BH_CLI") else ["bridgehost.cli"]),
         "reanalyze", str(store.root), "--script", "count.py", "--output", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out.jsonl.partial").exists():
            assert time.monotonic() < deadline and batch.poll() is None, batch.communicate()
            time.sleep(0.05)
        out.mkdir()  # the output cannot be written at the end (as with a full disk)
    finally:
        hold.unlink()
    _, stderr = batch.communicate(timeout=60)
    assert batch.returncode == 1
    assert "reanalyze: 3 ok, 0 failed, 0 skipped" in stderr and "Traceback" not in stderr
    assert f"its rows are in {out}.partial" in stderr
    assert len(rows_of(tmp_path / "out.jsonl.partial")) == 3


# -- a hostile datastore: one odd run never stops the batch -----------------------------


def test_odd_files_in_a_run_fail_that_run_only(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 5})
    deep = store.run("acme", "traction", "r01").path / "results.json"
    deep.write_text('{"deep": ' + "[" * 700 + "]" * 700 + "}")  # read by msgspec, deeper than the checks go
    corrupt = store.run("acme", "traction", "r02").path / "results.json"
    corrupt.write_text('{"deep": ' + "[" * 5000 + "]" * 5000 + "}")  # deeper than anything reads
    record = Path(store.run("acme", "traction", "r04").path, RECORDS_DIR, "script%3Acount.py%3Acalculate_results.json")
    record.mkdir(parents=True)  # a folder where the record goes
    out = tmp_path / "out.jsonl"
    summary = reanalyze(Options(datastore=store.root, script="count.py", save=True, output=out, workers=2, progress=False))
    rows = {r["run"].split("/")[-1]: r for r in rows_of(out)}
    assert {k: r["status"] for k, r in rows.items()} == {
        "r00": "SUCCESS", "r01": "SUCCESS", "r02": "IO_FAILURE", "r03": "CRASH", "r04": "IO_FAILURE"
    }
    assert (summary.ok, summary.failed) == (2, {"IO_FAILURE": 2, "CRASH": 1})
    assert store.run("acme", "traction", "r01").results()["n"] == 1  # merged beside the deep value
    assert "results.json: nested too deeply" in rows["r02"]["error"]
    assert f"its record {record} could not be written" in rows["r04"]["error"]


def test_save_past_max_saved_results_mb_fails_that_run_alone(tmp_path: Path) -> None:
    store = make_store(tmp_path / "ds", {"acme": 3})
    big = store.run("acme", "traction", "r01")
    big.save_results({"history": "x" * ((1 << 20) - 40)})  # one more merge takes it past 1 MiB
    before = (big.path / "results.json").read_bytes()
    out = tmp_path / "o.jsonl"
    args = [str(store.root), "--script", "count.py", "--save", "--max-saved-results-mb", "1", "--workers", "2",
            "--output", str(out), "--no-progress"]
    done = cli(*args)
    assert done.returncode == 1, done.stderr
    rows = {r["run"]: r for r in rows_of(out)}
    assert [rows[f"acme/traction/r0{i}"]["status"] for i in range(3)] == ["SUCCESS", "IO_FAILURE", "SUCCESS"]
    error = rows["acme/traction/r01"]["error"]
    assert str(big.path / "results.json") in error and "would become" in error
    assert f"max_saved_results_bytes ({1 << 20} bytes)" in error and "raise --max-saved-results-mb" in error
    assert (big.path / "results.json").read_bytes() == before
    assert rows["acme/traction/r01"]["n"] == 1  # the result is in its row, as in an online reply
    assert store.run("acme", "traction", "r00").results()["n"] == 1
    bad = cli(*args[:-5], "--max-saved-results-mb", "0")
    assert bad.returncode == 2 and "--max-saved-results-mb: 0 is out of range" in bad.stderr, bad.stderr


def test_workers_and_memory_limit_out_of_bounds_exit_2_naming_the_option(tmp_path: Path) -> None:
    # --workers 100000 made each of 2 zygotes run 50,000 runs at once (tens of thousands of processes).
    store = make_store(tmp_path / "ds", {"acme": 1})
    cpus = os.cpu_count() or 1
    base = [str(store.root), "--script", "count.py", "--no-progress"]
    many = cli(*base, "--workers", "100000")
    assert many.returncode == 2, many.stderr
    assert f"reanalyze: --workers: 100000 is more than {64 * cpus} (64 runs at once per CPU, {cpus} CPUs here" in many.stderr
    assert f"give at most {64 * cpus}" in many.stderr
    with pytest.raises(BadBatch, match="no run matched"):  # the bound itself is accepted (checked before the runs)
        reanalyze(Options(datastore=store.root, script="count.py", workers=64 * cpus, run="nothing"))
    with pytest.raises(BadBatch, match=rf"--workers: {4 * cpus + 1} is more than {4 * cpus} \(with --scheduler local"):
        reanalyze(Options(datastore=store.root, script="count.py", workers=4 * cpus + 1, scheduler="local"))
    with pytest.raises(BadBatch, match=r"--workers: 257 is more than 256 \(with a --scheduler address.*one zygote"):
        reanalyze(Options(datastore=store.root, script="count.py", workers=257, scheduler="tcp://127.0.0.1:9"))
    low = cli(*base, "--memory-limit-mb", "1")
    assert low.returncode == 2 and "reanalyze: --memory-limit-mb: Expected `int` >= 64" in low.stderr, low.stderr


def test_a_run_listed_twice_is_not_analysed_twice_at_once(tmp_path: Path) -> None:
    # Each line was analysed at the same time as the other: two processes saving one results.json and record.
    slow_pid = "import os, time\ndef calculate_results(ctx):\n    time.sleep(0.3)\n    return {'pid': os.getpid()}\n"
    store = make_store(tmp_path / "ds", {"acme": 2}, script=slow_pid)
    listed = tmp_path / "runs.txt"
    listed.write_text("acme/traction/r00\nacme/traction/r00\nacme/traction/r01\nacme/traction/r00\n")
    out = tmp_path / "o.jsonl"
    summary = reanalyze(Options(datastore=store.root, script="count.py", runs_from=listed, workers=4, save=True,
                                output=out, progress=False))
    assert (summary.ok, summary.skipped, summary.failed) == (2, 2, {})
    rows = [r for r in rows_of(out) if r["run"] == "acme/traction/r00"]
    assert sorted(r["skipped"] for r in rows) == [False, True, True]
    assert len({r["pid"] for r in rows}) == 1 and {r["status"] for r in rows} == {"SUCCESS"}
    assert store.run("acme", "traction", "r00").results() == {"pid": rows[0]["pid"]}
