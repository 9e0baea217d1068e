"""The confinement itself (``bridgehost_analysis.sandbox``), applied in a
forked child on the real kernel: what the child may still do and what it
gets EACCES/EPERM for. End-to-end cases through ``bridgehost run`` are in
``tests/hostile/test_sandbox.py``."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridgehost_analysis import sandbox
from bridgehost_analysis.sandbox import Confinement, Support

ABI = sandbox.abi_version()
needs_landlock = pytest.mark.skipif(ABI == 0, reason=f"this kernel ({os.uname().release}) offers no Landlock")


def in_child(confinement: Confinement, scratch: Path, read: list[str], probes: dict[str, Callable[[], Any]]) -> dict:
    """Fork; in the child prepare and enter ``confinement``, then run each
    probe; return ``{name: "ok" | errno name}``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.close(r)
            confinement.prepare(str(scratch))
            confinement.enter(read=read)
            results = {}
            for name, probe in probes.items():
                try:
                    probe()
                    results[name] = "ok"
                except OSError as e:
                    results[name] = errno.errorcode.get(e.errno or 0, str(e))
            os.write(w, json.dumps(results).encode())
        except BaseException as e:
            os.write(w, json.dumps({"error": repr(e)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    run = tmp_path / "run"
    run.mkdir()
    (run / "data.json").write_text("{}")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    return {"run": run, "scratch": scratch, "outside": outside}


@pytest.fixture
def listener() -> Any:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()


def _connect(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5):
        pass


@needs_landlock
def test_a_confined_child_reads_its_run_and_writes_only_its_scratch(layout, listener) -> None:
    parent = os.getpid()
    results = in_child(
        Confinement(), layout["scratch"], [str(layout["run"])],
        {
            "read run": lambda: (layout["run"] / "data.json").read_text(),
            "read outside": lambda: layout["outside"].read_text(),
            "read /etc/shadow": lambda: open("/etc/shadow").close(),
            "write scratch": lambda: (layout["scratch"] / "x").write_text("x"),
            "write run": lambda: (layout["run"] / "x").write_text("x"),
            "write outside": lambda: layout["outside"].write_text("mine now"),
            "write /dev/null": lambda: Path("/dev/null").write_text("x"),
            "import numpy": lambda: __import__("numpy.linalg"),
            "connect tcp": lambda: _connect(listener),
            "signal parent": lambda: os.kill(parent, 0),
            "signal self": lambda: os.kill(os.getpid(), 0),
        },
    )
    assert results.pop("error", None) is None
    assert results == {
        "read run": "ok",
        "read outside": "EACCES",
        "read /etc/shadow": "EACCES",
        "write scratch": "ok",
        "write run": "EACCES",
        "write outside": "EACCES",
        "write /dev/null": "ok",
        "import numpy": "ok",
        "connect tcp": "EACCES" if ABI >= 4 else "ok",
        "signal parent": "EPERM" if ABI >= 6 else "ok",
        "signal self": "ok",
    }
    assert layout["outside"].read_text() == "not yours"


@needs_landlock
def test_network_true_leaves_tcp_open_and_the_files_closed(layout, listener) -> None:
    results = in_child(
        Confinement(network=True), layout["scratch"], [str(layout["run"])],
        {"connect tcp": lambda: _connect(listener), "read outside": lambda: layout["outside"].read_text()},
    )
    assert results == {"connect tcp": "ok", "read outside": "EACCES"}


@needs_landlock
def test_extra_read_and_write_folders(layout, tmp_path) -> None:
    shared, export = tmp_path / "shared", tmp_path / "export"
    shared.mkdir()
    export.mkdir()
    (shared / "calibration.json").write_text("{}")
    results = in_child(
        Confinement(read=[str(shared)], write=[str(export)]), layout["scratch"], [],
        {
            "read shared": lambda: (shared / "calibration.json").read_text(),
            "write shared": lambda: (shared / "x").write_text("x"),
            "write export": lambda: (export / "x").write_text("x"),
        },
    )
    assert results == {"read shared": "ok", "write shared": "EACCES", "write export": "ok"}


def test_off_confines_nothing(layout) -> None:
    results = in_child(
        Confinement(mode="off"), layout["scratch"], [],
        {"read outside": lambda: layout["outside"].read_text(), "signal parent": lambda: os.kill(os.getppid(), 0)},
    )
    assert results == {"read outside": "ok", "signal parent": "ok"}


def test_what_an_older_kernel_gives_up_is_named_with_the_version_that_brings_it() -> None:
    lines = Support("best-effort", False, 3).describe()
    assert lines[0].startswith("sandbox best-effort: Landlock ABI 3")
    missing = [line for line in lines if "NOT enforced" in line]
    assert [m.split(":")[1].strip() for m in missing] == ["no TCP bind or connect", "no ioctl on devices",
                                                         "no signals to, or abstract unix sockets of, processes outside the run"]
    assert "Linux 6.7" in missing[0] and "Linux 6.12" in missing[2]
    warning = Support("best-effort", False, 3).warning()
    assert warning is not None and "network, ioctl, scope" in warning
    assert Support("best-effort", True, 6).warning() is None  # network = true asks for no TCP rule
    assert "no Landlock" in Support("best-effort", False, 0).describe()[0]
    assert Support("off", False, 7).enforced == []
