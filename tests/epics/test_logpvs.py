"""Log PVs against a real soft IOC: recent lines published, LogLevel and
SilencedLoggers obeyed through monitors."""

from __future__ import annotations

import uuid
from pathlib import Path

from bridgehost_epics.softioc import SoftIoc
from epics_support import Watch, deployment

HANDSHAKE_BOUND_S = 0.5
"""No-hang bound of one handshake (a few ms on a soft IOC) in the test of
log PVs the database lacks, whose writes each take put_timeout_s (1 s) to
fail: a handshake queued behind one of them takes most of that second."""


def text(value) -> str:
    return bytes(value.astype("uint8")).decode()


def test_log_lines_reach_their_level_pv(ioc, start_host):
    i = ioc()
    P = i.prefix
    start_host(deployment(P, "log_lines", trigger='params = {n = 3, logger = "rig.task"}'), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "WarningLog", P + "InfoLog"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(p.endswith("WarningLog") and "line 2 from the task" in text(v) for p, v, _ in ev))
        watch.wait(lambda ev: any(p.endswith("InfoLog") and "info from the task" in text(v) for p, v, _ in ev))
        warnings = text(c.get(P + "WarningLog"))
        assert [line.split("rig.task: ")[1] for line in warnings.splitlines() if "rig.task" in line] == [
            "line 0 from the task", "line 1 from the task", "line 2 from the task"]
        assert "info from the task" not in warnings
        assert "debug from the task" not in text(c.get(P + "DebugLog"))  # LogLevel is INFO


def test_log_level_and_silenced_loggers_take_effect(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "log_lines", trigger='params = {n = 1, logger = "rig.task"}'), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "DebugLog", P + "WarningLog", P + "Busy"])
        c.put(P + "LogLevel", 0)  # DEBUG
        host.wait_output("log level set to DEBUG")
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(p.endswith("DebugLog") and "debug from the task" in text(v) for p, v, _ in ev))

        c.put(P + "SilencedLoggers", ["rig"])  # a parent silences its children
        host.wait_output("silenced loggers set to rig")
        start = len(watch.events)
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for p, v, _ in ev[start:] if p.endswith("Busy")][-1:] == [0])
        c.put(P + "SilencedLoggers", [])
        host.wait_output("silenced loggers set to none")
        c.put(P + "LogLevel", 3)  # ERROR: the task's warnings no longer pass
        host.wait_output("log level set to ERROR")
        start = len(watch.events)
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for p, v, _ in ev[start:] if p.endswith("Busy")][-1:] == [0])
    out = host.output()
    assert out.count("line 0 from the task") == 1  # run 1 only: run 2 silenced, run 3 below ERROR
    assert out.count("debug from the task") == 1
    assert "ref=3" not in out  # even the host's own INFO lines are below ERROR now


def test_log_pvs_the_database_lacks_do_not_hold_up_the_handshake(tmp_path, start_host):
    """With log_pvs on and a database without the log PVs, each write of
    log lines waits put_timeout_s for an answer. The log PVs write through
    a queue of their own: the handshake's writes never wait behind them
    (they shared one, and each Busy=0 came 4-9 s late with put_timeout_s 5)."""
    i = SoftIoc(f"NL{uuid.uuid4().hex[:8].upper()}:", [Path(__file__).parent / "no_log_pvs.db"], tmp_path / "ioc.log")
    P = i.prefix
    i.start()
    try:
        host = start_host(deployment(P, "trivial", trigger="put_timeout_s = 1"), i.client_env)
        # WarningLog's first write failed (no answer within 1 s); that line is itself a warning,
        # which WarningLog's next write carries: it is on its way now, and will take 1 s to fail
        host.wait_output(f"put {P}WarningLog = ")
        with i.client() as c:
            watch = Watch(c, [P + "Busy"])
            watch.wait(lambda ev: len(ev) >= 1)
            for _ in range(3):
                start = len(watch.events)
                c.put(P + "Trigger", 1)
                seen = watch.wait(lambda ev, start=start: [int(v) for _, v, _ in ev[start:]][-2:] == [1, 0],
                                  timeout=HANDSHAKE_BOUND_S)  # raises when Busy=0 waits behind a log write
                assert [int(v) for _, v, _ in seen[start:]][-2:] == [1, 0]
    finally:
        i.kill()
