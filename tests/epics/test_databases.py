"""The epics trigger on a database that is not bridgehost.db: epics-bridge's
README shape (tests/epics/epics_bridge.db), one IOC and one host for the
module; then databases that lack a record, an IOC and a host each. The shipped db's Raw Soft Channel TaskStatus is covered in
test_trigger.py (test_completion_order_and_fresh_status_when_busy_drops)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridgehost_epics.softioc import SoftIoc
from epics_support import HostProcess, Watch, deployment

SUCCESS, TASK_FAIL = 0, 1
DB = Path(__file__).parent / "epics_bridge.db"


class Rig:
    def __init__(self, ioc: SoftIoc, host: HostProcess, channels_when_ready: set[str]):
        self.ioc, self.host, self.channels_when_ready = ioc, host, channels_when_ready
        self.P = ioc.prefix

    def cycle(self, c, watch: Watch) -> None:
        """One put of Trigger=1 and its handshake, to Trigger back at 0."""
        start = len(watch.events)
        c.put(self.P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for p, v, _ in ev[start:] if p.endswith("Trigger")][-2:] == [1, 0])


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("epics-bridge-db")
    ioc = SoftIoc(f"EB{uuid.uuid4().hex[:8].upper()}:", [DB], folder / "ioc.log", probe="Trigger")
    ioc.start()
    config = folder / "host.toml"
    config.write_text(deployment(ioc.prefix, "alternate", trigger="trigger_count = false"))
    host = HostProcess(config, ioc.client_env, folder / "host.log")
    try:
        host.wait_output("' running: tasks")  # the host reports ready
        yield Rig(ioc, host, ioc.channels())
    finally:
        host.stop()
        ioc.kill()


def test_the_channels_the_handshake_writes_are_connected_when_the_host_reports_ready(rig):
    """Issue 13 item 19: not on the first trigger (a search and a connection
    each, about 40 ms on a soft IOC)."""
    P = rig.P
    written = {P + "Busy", P + "Trigger", P + "TaskStatus", P + "TaskDuration", P + "InfoLog", P + "WarningLog", P + "ErrorLog"}
    assert written <= rig.channels_when_ready


def test_a_soft_channel_task_status_gets_each_status(rig):
    """Issue 13 item 17: a Soft Channel mbbi ignores a put to RVAL; the
    trigger reads TaskStatus.DTYP and writes VAL instead."""
    P = rig.P
    with rig.ioc.client() as c:
        watch = Watch(c, [P + "Trigger"])
        watch.wait(lambda ev: len(ev) >= 1)
        statuses = []
        for _ in range(6):
            rig.cycle(c, watch)
            statuses.append(int(c.get(P + "TaskStatus")))
    assert statuses in ([SUCCESS, TASK_FAIL] * 3, [TASK_FAIL, SUCCESS] * 3)  # the task alternates
    assert f"{P}TaskStatus: writing statuses to {P}TaskStatus\n" in rig.host.output()


def test_string_waveform_log_pvs_get_the_lines_and_another_type_one_warning(rig):
    """Issue 13 item 18: one line per element (split at 39 bytes), the
    newest NELM kept; a DOUBLE waveform is named once, with log_pvs = false."""
    P = rig.P
    with rig.ioc.client() as c:
        watch = Watch(c, [P + "Trigger", P + "WarningLog"])
        watch.wait(lambda ev: len(ev) >= 2)
        for _ in range(2):  # one of two runs fails: a WARNING line
            rig.cycle(c, watch)
        watch.wait(lambda ev: any(p.endswith("WarningLog") and "fails on purpose" in "".join(v) for p, v, _ in ev))
        elements = list(c.get(P + "WarningLog"))
    assert 0 < len(elements) <= 20
    assert all(len(e.encode()) <= 39 for e in elements)
    assert "fails on purpose" in "".join(elements)
    out = rig.host.output()
    assert "Assign StringA" not in out and "WarningLog = " not in out  # no failed put
    warning = f"log PV {P}DebugLog is FTVL=DOUBLE"
    assert out.count(warning) == 1 and "log_pvs = false" in out.split(warning)[1].splitlines()[0]


def _serve(tmp_path, start_host, db_text: str, target: str, trigger: str) -> tuple[SoftIoc, HostProcess]:
    db = tmp_path / "ioc.db"
    db.write_text(db_text)
    ioc = SoftIoc(f"DB{uuid.uuid4().hex[:8].upper()}:", [db], tmp_path / "ioc.log", probe="Trigger")
    ioc.start()
    try:
        return ioc, start_host(deployment(ioc.prefix, target, trigger=trigger), ioc.client_env)
    except BaseException:
        ioc.kill()
        raise


def test_a_database_without_busy_gets_an_error_naming_it_and_statuses_without_waiting_for_it(tmp_path, start_host):
    """Busy missing (and TaskDuration a longin): before, nothing was said at
    start, and each Busy write waited put_timeout_s before the writes after
    it (TaskStatus, Trigger=0): with put_timeout_s 60, a status a minute late."""
    text = (Path(__file__).parent / "no_log_pvs.db").read_text()
    text = text.replace('record(bi, "$(P)Busy") {\n    field(ZNAM, "Idle")\n    field(ONAM, "Busy")\n}\n', "")
    text = text.replace('record(ai, "$(P)TaskDuration") {\n    field(PREC, "3")\n', 'record(longin, "$(P)TaskDuration") {\n')
    assert "Busy" not in text and "longin" in text
    ioc, host = _serve(tmp_path, start_host, text, "fail", "put_timeout_s = 60\nlog_pvs = false")
    P = ioc.prefix
    try:
        host.wait_output(f"ERROR   bridgehost_epics.trigger: {P}Busy does not answer, but the IOC does: is {P}Busy "
                         "(a bi record: 1 while a put is pending, 0 once every status is written) in the database "
                         f"loaded with P={P}?")
        with ioc.client() as c:
            watch = Watch(c, [P + "TaskStatus", P + "Trigger"])
            watch.wait(lambda ev: len(ev) >= 2)
            c.put(P + "Trigger", 1)
            watch.wait(lambda ev: [int(v) for p, v, _ in ev if p.endswith("Trigger")][-2:] == [1, 0])
            assert int(c.get(P + "TaskStatus")) == TASK_FAIL
    finally:
        ioc.kill()
    out = host.output()
    assert f"{P}TaskDuration holds integers (0): a run's seconds are written cut to a whole number" in out
    assert f"put {P}Busy" not in out  # not tried, so no failure to report


def test_refusals_on_a_database_without_refused_do_not_hold_the_status(tmp_path, start_host):
    """A put storm in refuse mode on a database without Refused: before, each
    refusal's write of Refused waited put_timeout_s ahead of the run's status
    (a 0.5 s run with two refusals reported Busy=0 after 10 s)."""
    text = (Path(__file__).parent / "no_log_pvs.db").read_text()
    ioc, host = _serve(tmp_path, start_host, text, "slow",
                       'params = {sleep_s = 0.5}\non_busy = "refuse"\nput_timeout_s = 60\nlog_pvs = false')
    P = ioc.prefix
    try:
        host.wait_output(f"{P}Refused does not answer (an older database?): refusals are counted in the log only")
        with ioc.client() as c:
            watch = Watch(c, [P + "Busy"])
            watch.wait(lambda ev: len(ev) >= 1)
            for _ in range(20):
                c.put(P + "Trigger", 1)
            watch.wait(lambda ev: [int(v) for _, v, _ in ev][-2:] == [1, 0])
    finally:
        ioc.kill()
    out = host.output()
    assert out.count("SUCCESS in") == 1 and "19 refused so far" in out
    assert f"put {P}Refused" not in out
