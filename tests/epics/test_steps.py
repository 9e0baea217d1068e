"""Step control over EPICS (bridgehost_epics.steps) against a real soft IOC
and the embedded server: a sequence started by Trigger, paused, resumed and
halted by PV puts, its State and Location on PVs, and every refusal visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from p4p.client.thread import Context

from bridgehost_epics.convert import read_long_string
from bridgehost_epics.names import STEP_STATES, db_path
from bridgehost_epics.softioc import SoftIoc, free_port
from bridgehost_steps import State
from epics_support import Watch

EXAMPLES = Path(__file__).parents[2] / "examples" / "steps"
CANCELLED, SUCCESS = 6, 0

STEADY = """
[host]
name = "steps-test"
shutdown_grace_s = 2

[[triggers]]
kind = "epics"
prefix = "{prefix}"
task = "steady"
{trigger}

[[tasks]]
name = "steady"
kind = "step"
target = "epics_steps:steady"
data = {{ phases = {phases}, phase_s = 0.25 }}
timeout_s = 60
"""


class PVs:
    """What a client sees of the step control PVs under one prefix."""

    NAMES = ("State", "Busy", "Location", "ControlAnswer", "TaskStatus", "Pause", "Resume", "Halt")

    def __init__(self, ctxt, prefix: str):
        self.c = ctxt
        self.P = prefix
        self.watch = Watch(ctxt, [prefix + n for n in self.NAMES])
        self.watch.wait(lambda ev: len({p for p, _, _ in ev}) == len(self.NAMES))  # the initial values

    def put(self, name: str, value=1) -> int:
        """Put; returns the event index after which its effects show."""
        mark = len(self.watch.events)
        self.c.put(self.P + name, value)
        return mark

    def next(self, name: str, predicate, after: int):
        """The first value of ``name`` arriving after event ``after`` for
        which ``predicate(value)`` holds (waits for it): (index, value)."""
        pv = self.P + name
        events = self.watch.wait(lambda ev: any(p == pv and predicate(v) for p, v, _ in ev[after:]))
        return next((k, v) for k, (p, v, _) in enumerate(events) if k >= after and p == pv and predicate(v))

    def state(self, state: str, after: int) -> int:
        return self.next("State", lambda v: STEP_STATES[int(v)] == state, after)[0]

    def answer(self, control: str, after: int) -> dict:
        def parse(v):
            text = read_long_string(v)
            return json.loads(text) if text else {}

        return parse(self.next("ControlAnswer", lambda v: parse(v).get("control") == control, after)[1])

    def location(self, predicate, after: int):
        return json.loads(read_long_string(self.next("Location", lambda v: predicate(json.loads(read_long_string(v))), after)[1]))

    def close(self) -> None:
        self.watch.close()


def example(prefix: str) -> str:
    text = (EXAMPLES / "prep-epics.toml").read_text().replace("PREP:01:", prefix)
    return text.replace('"prep.py:', f'"{EXAMPLES / "prep.py"}:')  # the config runs from tmp_path


def test_the_example_sequence_is_paused_resumed_and_halted_from_pvs(ioc, start_host):
    """examples/steps/prep-epics.toml: Trigger starts the sequence; Pause
    pauses it (State paused, Busy stays 1, Location shows where); Resume;
    Halt ends it halted, TaskStatus Cancelled, Busy 0, in that order."""
    i = ioc()
    P = i.prefix
    host = start_host(example(P), i.client_env)
    with i.client() as c:
        choices = list(c.get(P + "State").raw.value.choices)
        assert choices == ["idle", *(s.value for s in State)] == list(STEP_STATES)
        pvs = PVs(c, P)
        mark = pvs.put("Trigger")
        pvs.state("running", mark)
        pvs.next("Busy", lambda v: int(v) == 1, mark)
        heating = pvs.location(lambda loc: loc and loc["name"] == "heat" and loc["location"], mark)
        assert heating["step"] == 0 and set(heating["location"]) == {"phase", "setpoint_c"}

        mark = pvs.put("Pause")
        answer = pvs.answer("pause", mark)
        assert answer["accepted"] and answer["state"] == "pausing" and answer["put"] == 1
        pvs.state("paused", mark)
        assert int(c.get(P + "Busy")) == 1
        paused_at = json.loads(read_long_string(c.get(P + "Location")))
        assert paused_at["name"] == "heat" and "phase" in paused_at["location"]
        # the README's client prints the long strings as text
        shown = subprocess.run([sys.executable, "-m", "bridgehost_epics.pv", "get", P + "State", P + "Location"],
                               capture_output=True, text=True, timeout=60, env={**os.environ, **i.client_env})
        assert shown.stdout.splitlines() == [f"{P}State paused", f"{P}Location {json.dumps(paused_at, separators=(',', ':'))}"]

        mark = pvs.put("Resume")
        assert pvs.answer("resume", mark)["accepted"]
        pvs.state("running", mark)
        assert int(c.get(P + "Busy")) == 1

        mark = pvs.put("Halt")
        assert pvs.answer("halt", mark)["accepted"]
        halted = pvs.state("halted", mark)
        status, _ = pvs.next("TaskStatus", lambda v: int(v) == CANCELLED, mark)
        idle, _ = pvs.next("Busy", lambda v: int(v) == 0, mark)
        assert halted < status < idle  # a client waiting for Busy=0 reads the final State and TaskStatus
        for name in ("Pause", "Resume", "Halt"):  # answered, reset
            pvs.next(name, lambda v: int(v) == 0, 0)
        pvs.close()
    out = host.output()
    assert "Pause put #1: pause of job" in out and "CANCELLED in" in out and "halted by request" in out


def test_refusals_are_answered_on_control_answer_and_warning_log(ioc, start_host):
    """A Pause while nothing runs, a Pause of a step that is not pausable and
    a Resume of a running one are refused with the reason; the step runs on
    to Success; a Halt after it ended is refused too."""
    i = ioc()
    P = i.prefix
    host = start_host(STEADY.format(prefix=P, trigger="", phases=8), i.client_env)
    with i.client() as c:
        pvs = PVs(c, P)
        mark = pvs.put("Pause")
        answer = pvs.answer("pause", mark)
        assert not answer["accepted"] and answer["reason"].startswith("nothing is running: put 1 to ")
        pvs.next("Pause", lambda v: int(v) == 0, mark)

        mark = pvs.put("Trigger")
        pvs.state("running", mark)
        mark = pvs.put("Pause")
        answer = pvs.answer("pause", mark)
        assert not answer["accepted"] and answer["reason"].startswith("not pausable") and answer["job_id"]
        mark = pvs.put("Resume")
        assert pvs.answer("resume", mark)["reason"] == "not paused"

        pvs.state("completed", mark)
        # after the Resume put, not after the State update: monitors of two PVs may arrive in either order
        pvs.next("Busy", lambda v: int(v) == 0, mark)
        assert int(c.get(P + "TaskStatus")) == SUCCESS and float(c.get(P + "TaskDuration")) > 0
        assert json.loads(read_long_string(c.get(P + "Location"))) == {"phase": 7, "of": 8}

        mark = pvs.put("Halt")
        answer = pvs.answer("halt", mark)
        assert not answer["accepted"] and "has ended (completed)" in answer["reason"]
        warnings = Watch(c, [P + "WarningLog"])
        warnings.wait(lambda ev: bool(ev) and "Halt put #1 refused" in read_long_string(ev[-1][1]))
        log = read_long_string(c.get(P + "WarningLog"))
        assert f"{P}Pause put #1 refused: nothing is running" in log
        assert f"{P}Pause put #2 refused: not pausable" in log
        assert f"{P}Resume put #1 refused: not paused" in log
        warnings.close()
        pvs.close()
    assert host.output().count("SUCCESS in") == 1


def test_a_database_without_the_step_records_still_runs_steps(tmp_path, start_host):
    """epics-bridge compatibility: an IOC with only the records before step
    control (Trigger ... SilencedLoggers) runs a step task; the absent State,
    Location and ControlAnswer are not written (no write timeouts), and one
    WARNING says so."""
    text = db_path().read_text()
    db = tmp_path / "no-steps.db"
    db.write_text(text[: text.index("# Step control")])
    i = SoftIoc(f"BH{uuid.uuid4().hex[:8].upper()}:", [db], tmp_path / "ioc.log")
    i.start()
    try:
        host = start_host(STEADY.format(prefix=i.prefix, trigger="", phases=2), i.client_env)
        with i.client() as c:
            watch = Watch(c, [i.prefix + "Busy"])
            c.put(i.prefix + "Trigger", 1)
            watch.wait(lambda ev: [int(v) for _, v, _ in ev] == [0, 1, 0])
            assert int(c.get(i.prefix + "TaskStatus")) == SUCCESS
            watch.close()
        host.wait_output("SUCCESS in")
    finally:
        i.kill()
    out = host.output()
    assert out.count(f"{i.prefix}PauseCount does not answer: no step control records on the IOC") == 1
    assert f"put {i.prefix}State" not in out and f"put {i.prefix}Location" not in out


def test_the_embedded_server_serves_the_step_records(start_host):
    """serve = true: the same record names without an IOC; a built-in delay
    step paused and halted by puts."""
    port = free_port()
    config = f"""
[host]
name = "steps-served"
shutdown_grace_s = 2

[[transports]]
kind = "pva"
serve = true
port = {port}

[[triggers]]
kind = "epics"
prefix = "SRV:"
task = "hold"

[[tasks]]
name = "hold"
kind = "step"
target = "delay"
data = {{ seconds = 30 }}
timeout_s = 60
"""
    start_host(config, {})
    conf = {"EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{port}", "EPICS_PVA_ADDR_LIST": "", "EPICS_PVA_AUTO_ADDR_LIST": "NO"}
    with Context("pva", conf=conf, useenv=False) as c:
        assert list(c.get("SRV:State").raw.value.choices) == list(STEP_STATES)
        pvs = PVs(c, "SRV:")
        mark = pvs.put("Trigger")
        pvs.location(lambda loc: loc is not None and "remaining_s" in loc, mark)
        mark = pvs.put("Pause")
        pvs.state("paused", mark)
        mark = pvs.put("Halt")
        halted = pvs.state("halted", mark)
        status, _ = pvs.next("TaskStatus", lambda v: int(v) == CANCELLED, mark)
        assert halted < status
        pvs.next("Busy", lambda v: int(v) == 0, status)
        pvs.close()


BAD = {
    "a callable task": (
        'step_control = true', 'kind = "callable"\ntarget = "epics_tasks:trivial"',
        "triggers[0].step_control: task 't' is not a step or sequence task"),
    "a pvs table": (
        '[triggers.pvs]\nx = "{prefix}X"', 'kind = "step"\ntarget = "delay"\ndata = { seconds = 1 }',
        "triggers[0].params: not valid for step task 't'"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_check_refuses_step_control_that_cannot_work(tmp_path, case):
    trigger, task, message = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(f'[[triggers]]\nkind = "epics"\nprefix = "X:"\ntask = "t"\n{trigger}\n\n[[tasks]]\nname = "t"\n{task}\n')
    result = subprocess.run([sys.executable, "-m", "bridgehost.cli", "check", str(path)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_step_control_without_bridgehost_steps_names_the_install(tmp_path):
    """bridgehost-epics works without bridgehost-steps; asking for step
    control then is a config error saying what to install."""
    path = tmp_path / "no-steps.toml"
    path.write_text('[[triggers]]\nkind = "epics"\nprefix = "X:"\ntask = "t"\nstep_control = true\n\n'
                    '[[tasks]]\nname = "t"\nkind = "callable"\ntarget = "json:dumps"\n')
    hide = "import sys; sys.modules['bridgehost_steps'] = None; from bridgehost.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", hide, "check", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step control needs bridgehost-steps, which is not installed" in result.stderr
    assert "pip install bridgehost-steps" in result.stderr


def test_step_control_is_armed_when_the_host_reports_ready(ioc, start_host):
    """As Trigger's (test_trigger.py): the Pause, Resume and Halt monitors
    have their first values before the host reports ready. Before, they
    connected after it: a Pause put right after ready was taken for one left
    at 1 before bridgehost connected and reset without an answer (seen as
    the flaky test above on a loaded machine)."""
    i = ioc()
    P = i.prefix
    host = start_host(STEADY.format(prefix=P, trigger="", phases=2), i.client_env, wait_for="running: tasks")
    before_ready = host.output().split("running: tasks")[0]
    for control in ("Pause", "Resume", "Halt"):
        assert f"monitoring {P}{control}Count" in before_ready
