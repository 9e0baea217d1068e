"""Temporary files a writer killed with SIGKILL left behind are removed by
the next write of the run's results (issue 13 item 13): only files of the
exact name ``write_atomic`` gives results.json's temporaries, and only under
the run's lock, so never a temporary a live writer is still filling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from bridgehost_analysis.datastore import Datastore

# A writer that stops for good inside the temporary file: the test kills it there.
STALLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from bridgehost_analysis.datastore import Datastore

    fsync = os.fsync

    def stall(fd):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            return fsync(fd)  # a folder
        print("writing", flush=True)
        time.sleep(300)

    os.fsync = stall  # write_atomic fsyncs the temporary file before renaming it
    Datastore(sys.argv[1]).run("p", "d", "r").merge_results({"step": 2})
    """
)


def test_temporaries_of_a_writer_killed_during_a_save_are_removed_by_the_next_save(tmp_path) -> None:
    store = Datastore(tmp_path / "datastore")
    run = store.run("p", "d", "r")
    run.save(project={}, configuration={}, results={"step": 1})
    others = [run.path / ".results.json.not-hex.tmp", run.path / ".project.json.0123456789ab.tmp", run.path / "notes.tmp"]
    for path in others:
        path.write_text("not results.json's temporary")

    def temporaries() -> list[str]:
        return sorted(p.name for p in run.path.glob(".results.json.*.tmp") if p not in others)

    def start_writer() -> subprocess.Popen:
        writer = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, str(store.root)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n"  # inside its temporary file, holding the run's lock
        return writer

    def kill(writer: subprocess.Popen) -> None:
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(30) == -signal.SIGKILL

    first = start_writer()
    kill(first)
    [left] = temporaries()
    assert run.results() == {"step": 1}  # the old file, whole

    second = start_writer()
    try:
        assert temporaries() != [left] and len(temporaries()) == 1  # the leftover went, the live one stays
    finally:
        kill(second)
    assert len(temporaries()) == 1

    run.merge_results({"step": 3})

    assert run.results() == {"step": 3}
    assert not [p for p in run.path.glob(".results.json.*.tmp") if p not in others]
    assert all(p.exists() for p in others)  # not what the results writer names its temporaries
    assert sorted(os.listdir(run.path)).count("results.json") == 1
