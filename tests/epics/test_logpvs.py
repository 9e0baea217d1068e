"""Log PVs against a real soft IOC: recent lines published, LogLevel and
SilencedLoggers obeyed through monitors."""

from __future__ import annotations

from epics_support import Watch, deployment


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
