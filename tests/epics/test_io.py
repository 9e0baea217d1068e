"""bridgehost_epics.io and PV interfaces: NT values to Python/NumPy from a
real IOC and a real p4p server, typed errors, templates checked at build."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from p4p.nt import NTNDArray
from p4p.server import Server
from p4p.server.thread import SharedPV

from bridgehost.cli import main as cli
from bridgehost.jobs import Status
from bridgehost_epics import io
from bridgehost_epics.names import PVInterface


@pytest.fixture
def client_env(monkeypatch):
    def use(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return use


def test_nt_values_from_an_ioc_become_plain_values(ioc, client_env):
    i = ioc()
    P = i.prefix
    client_env(i.client_env)
    io.put_many({P + "TaskDuration": 1.5, P + "Busy": 1, P + "Refused": 7})
    io.put(P + "SilencedLoggers", ["a", "b.c"])
    io.put(P + "InfoLog", np.frombuffer(b"hi", dtype=np.int8))
    duration, busy, refused = io.get(P + "TaskDuration"), io.get(P + "Busy"), io.get(P + "Refused")
    assert (duration, type(duration)) == (1.5, float)   # NTScalar double
    assert (busy, type(busy)) == (1, int)               # NTEnum: the index
    assert (refused, type(refused)) == (7, int)         # NTScalar int
    assert io.get(P + "SilencedLoggers") == ["a", "b.c"]  # NTScalarArray of strings
    log = io.get(P + "InfoLog")                         # NTScalarArray of numbers
    assert type(log) is np.ndarray and log.tobytes() == b"hi"


def test_async_get_and_put(ioc, client_env):
    i = ioc()
    P = i.prefix
    client_env(i.client_env)

    async def go():
        await io.aput(P + "TaskDuration", 2.25)
        return await io.aget(P + "TaskDuration")

    assert asyncio.run(go()) == 2.25


def test_ntndarray_becomes_an_ndarray_in_its_shape(client_env):
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    pv = SharedPV(nt=NTNDArray(), initial=image)
    with Server(providers=[{"TEST:image": pv}], isolate=True) as server:
        conf = server.conf()
        client_env({"EPICS_PVA_ADDR_LIST": "", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                    "EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{conf['EPICS_PVAS_SERVER_PORT']}"})
        value = io.get("TEST:image")
    assert type(value) is np.ndarray
    assert value.shape == (3, 4) and value.dtype == np.uint16
    assert (value == image).all()


def test_failures_are_io_failures_naming_the_pv(ioc, client_env):
    i = ioc()
    P = i.prefix
    client_env(i.client_env)
    with pytest.raises(io.PVIOError) as missing:
        io.get(P + "NoSuchPV", timeout=0.5)
    assert missing.value.status is Status.IO_FAILURE
    assert str(missing.value) == f"get {P}NoSuchPV: no answer within 0.5 s (is the IOC running and the PV name right?)"
    with pytest.raises(io.PVIOError) as bad:
        io.put(P + "TaskDuration", "fast")
    assert bad.value.pv == P + "TaskDuration" and bad.value.op == "put"


def test_interface_resolves_templates():
    pvs = PVInterface({"position_rbv": "{main}Pos:RBV", "temperature": "{sys}Temp:Mon"},
                      {"main": "IOC:MOTOR:01:", "sys": "IOC:SYS:"})
    assert dict(pvs) == {"position_rbv": "IOC:MOTOR:01:Pos:RBV", "temperature": "IOC:SYS:Temp:Mon"}
    assert pvs.temperature == "IOC:SYS:Temp:Mon"


def test_check_names_a_missing_prefix_key(tmp_path, capsys):
    config = tmp_path / "motor.toml"
    config.write_text("""
[[triggers]]
kind = "epics"
prefix = "MOTOR:01:"
task = "move"
prefixes = { main = "IOC:MOTOR:01:" }
pvs = { position_rbv = "{main}Pos:RBV", temperature = "{sys}Temp:Mon" }

[[tasks]]
name = "move"
kind = "callable"
target = "json:dumps"
""")
    assert cli(["check", str(config)]) == 2
    err = capsys.readouterr().err
    assert "triggers[0].pvs.temperature" in err
    assert "uses prefix key 'sys', which is not defined (defined: main, prefix)" in err


def test_check_names_an_unknown_task(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[[triggers]]\nkind = "epics"\nprefix = "X:"\ntask = "nope"\n')
    assert cli(["check", str(config)]) == 2
    assert "triggers[0].task: no task named 'nope' (tasks: none)" in capsys.readouterr().err


def test_the_pv_command_puts_and_gets_plain_values(ioc):
    """`python -m bridgehost_epics.pv`, which the examples' READMEs use
    (p4p's own `python -m p4p.client.cli put` raises NameError here)."""
    i = ioc()
    P = i.prefix
    env = {**os.environ, **i.client_env}

    def pv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bridgehost_epics.pv", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    put = pv("put", f"{P}TaskDuration=2.5", f"{P}Refused=3")
    assert put.returncode == 0, put.stderr
    refused = pv("put", f"{P}TaskDuration=fast")  # text for a double: refused, naming the PV
    assert refused.returncode == 1 and f"{P}TaskDuration" in refused.stderr
    got = pv("get", f"{P}TaskDuration", f"{P}Refused")
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == [f"{P}TaskDuration 2.5", f"{P}Refused 3"]
    assert pv("put", f"{P}Trigger").returncode == 2  # no value: usage
