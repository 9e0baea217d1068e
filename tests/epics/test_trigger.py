"""The epics trigger against a real soft IOC: the handshake, every put
served, policies, statuses."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from bridgehost_epics.names import db_path
from bridgehost_epics.softioc import SoftIoc
from epics_support import WAIT_S, Watch, deployment

SUCCESS, TASK_FAIL, IO_FAILURE, CRASH, CANCELLED = 0, 1, 2, 3, 6


def runs(host, outcome: str = "bridgehost.job: ") -> int:
    return host.output().count(outcome)


def wait_runs(host, n: int, outcome: str = "bridgehost.job: ") -> None:
    """Until ``n`` outcome lines (of one kind: ``"SUCCESS in"``) are logged.
    Repeated BUSY lines are rate-limited (bridgehost.logs): count the runs."""
    deadline = time.monotonic() + WAIT_S
    while runs(host, outcome) < n:
        assert time.monotonic() < deadline, host.output()
        time.sleep(0.05)


def test_completion_order_and_fresh_status_when_busy_drops(ioc, start_host):
    """TaskStatus and TaskDuration are written before Busy=0, and Trigger
    is reset last: a client that waits for Busy=0 reads the new status
    (epics-bridge read a stale one in 46-49 of 50 cycles)."""
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "alternate"), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "TaskStatus", P + "TaskDuration", P + "Busy", P + "Trigger"])
        watch.wait(lambda ev: len(ev) >= 4)  # the initial values
        stale = 0
        for cycle in range(1, 11):
            start = len(watch.events)
            c.put(P + "Trigger", 1)
            # a client polling like epics-bridge's: wait for Busy=0, then read
            watch.wait(lambda ev, start=start: any(p == P + "Busy" and int(v) == 0 for p, v, _ in ev[start + 1:]))
            expected = SUCCESS if cycle % 2 else TASK_FAIL
            stale += int(c.get(P + "TaskStatus")) != expected
            done = {P + "Trigger": 0, P + "Busy": 0, P + "TaskDuration": None}
            ev = watch.wait(lambda ev, start=start, done=done: all(
                any(p == pv and (want is None or int(v) == want) for p, v, _ in ev[start + 1:])
                for pv, want in done.items()))
            # Monitors of different PVs may arrive in any order; the IOC's
            # processing timestamps give the order the writes happened in.
            order = [p[len(P):] for p, v, _ in sorted(ev[start:], key=lambda e: e[2])]
            assert order[0] == "Trigger" and order[1] == "Busy", order  # Trigger=1, then Busy=1
            assert order[-3:] == ["TaskDuration", "Busy", "Trigger"], order
            if cycle > 1:  # the status changes every cycle, so its update is there, before Duration
                assert order[-4] == "TaskStatus", order
        assert stale == 0
    assert runs(host) == 10


def test_queue_mode_runs_every_put_made_during_a_long_task(ioc, start_host):
    puts = 6
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "slow", trigger='params = {sleep_s = 0.6}'), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "Busy"])
        for _ in range(puts):  # all while the first run sleeps: Trigger stays 1
            c.put(P + "Trigger", 1)
        wait_runs(host, puts)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [0])
        # Busy went 1 once and back to 0 once: it stays 1 while puts are pending
        assert [int(v) for v in watch.values(P + "Busy")] == [0, 1, 0]
        assert c.get(P + "Refused") == 0
    assert host.output().count("SUCCESS in") == puts


def test_refuse_mode_counts_each_refusal(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "slow", trigger='on_busy = "refuse"\nparams = {sleep_s = 1.0}'), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "Refused", P + "Busy"])
        for _ in range(4):
            c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(p.endswith("Refused") and int(v) == 3 for p, v, _ in ev))
        watch.wait(lambda ev: [int(v) for p, v, _ in ev if p.endswith("Busy")][-1:] == [0])
    out = host.output()
    assert out.count("SUCCESS in") == 1
    assert out.count("refused:") == 3
    assert "3 refused so far" in out


def test_full_queue_is_a_counted_refusal(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "slow", queue_size=1, trigger="params = {sleep_s = 1.0}"), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "Refused"])
        for _ in range(4):  # one runs, one waits, two find the queue full
            c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(int(v) == 2 for _, v, _ in ev))
        wait_runs(host, 2, "SUCCESS in")
    out = host.output()
    assert out.count("SUCCESS in") == 2
    assert out.count("queue of 1 is full") >= 2


def test_a_crash_is_code_crash_and_the_next_trigger_runs(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "crash_once"), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "TaskStatus", P + "Trigger"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(p.endswith("TaskStatus") and int(v) == CRASH for p, v, _ in ev))
        watch.wait(lambda ev: [int(v) for p, v, _ in ev if p.endswith("Trigger")][-1:] == [0])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for p, v, _ in ev if p.endswith("TaskStatus")][-1:] == [SUCCESS])
    assert host.proc.poll() is None
    assert "ZeroDivisionError: first call crashes" in host.output()


def test_a_missing_pv_is_io_failure(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "read_missing", trigger=f'params = {{pv = "{P}NoSuchPV"}}'), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "TaskStatus"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(int(v) == IO_FAILURE for _, v, _ in ev))
    assert f"get {P}NoSuchPV: no answer within 0.5 s" in host.output()


def test_the_trigger_is_armed_when_the_host_reports_ready(ioc, start_host):
    """Issue 13 item 19: the monitor of TriggerCount has its first value,
    and the start-up rules (on_startup) are applied, before the host
    reports ready (the log line, systemd's READY=1). Before, the host
    reported ready first: a put right after ready waited for the monitor's
    connection, and was taken for a Trigger left at 1 before start-up
    (with on_startup = "clear", cleared without running)."""
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "trivial", trigger='on_startup = "clear"'), i.client_env, wait_for="running: tasks")
    before_ready = host.output().split("running: tasks")[0]
    assert f"monitoring {P}TriggerCount" in before_ready
    with i.client() as c:
        c.put(P + "Trigger", 1)
    wait_runs(host, 1)
    assert "already 1 when bridgehost connected" not in host.output()


@pytest.mark.parametrize("policy, runs_expected", [("run", 1), ("clear", 0)])
def test_a_trigger_set_before_start_up(ioc, start_host, policy, runs_expected):
    i = ioc()
    P = i.prefix
    with i.client() as c:
        c.put(P + "Trigger", 1)
        watch = Watch(c, [P + "Trigger"])
        host = start_host(deployment(P, "trivial", trigger=f'on_startup = "{policy}"'), i.client_env)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [0])
    if runs_expected:
        wait_runs(host, 1)
    time.sleep(0.3)  # would a wrong run show up?
    assert host.output().count("SUCCESS in") == runs_expected
    assert 'already 1 when bridgehost connected' in host.output()


def test_without_trigger_count_each_put_after_the_reset_runs(ioc, start_host):
    """epics-bridge's db has no TriggerCount: with trigger_count = false the
    monitor of Trigger itself serves each put made after the previous reset."""
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "trivial", trigger="trigger_count = false"), i.client_env, wait_for="monitoring ")
    with i.client() as c:
        watch = Watch(c, [P + "Trigger"])
        for n in (1, 2, 3):
            start = len(watch.events)
            c.put(P + "Trigger", 1)
            watch.wait(lambda ev, start=start: [int(v) for _, v, _ in ev[start:]][-1:] == [0] and len(ev) > start + 1)
            wait_runs(host, n)
    assert host.output().count("SUCCESS in") == 3
    assert "trigger_count = false" in host.output()


def test_a_host_stopped_mid_run_reports_the_cancelled_job_and_drops_busy(ioc, start_host):
    """SIGTERM during a run: after the grace the job is cancelled, and
    TaskStatus (Cancelled), Busy=0 and Trigger=0 reach the IOC before the
    process exits, so no client is left waiting on a Busy=1 nobody owns."""
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "slow", trigger="params = {sleep_s = 60}"), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "Busy"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [1])  # the run started
        host.proc.send_signal(signal.SIGTERM)
        assert host.wait_exit() == 0, host.output()
        assert "CANCELLED" in host.output()
        assert int(c.get(P + "TaskStatus")) == CANCELLED
        assert c.get(P + "Busy") == 0
        assert c.get(P + "Trigger") == 0


def test_an_ioc_away_at_start_is_logged_and_served_once_it_answers(tmp_path, start_host):
    """The host does not wait for the IOC past put_timeout_s; when the IOC
    answers, the channels connect and TaskStatus.DTYP is read then."""
    i = SoftIoc(f"BH{uuid.uuid4().hex[:8].upper()}:", [db_path()], tmp_path / "ioc.log")
    P = i.prefix
    try:
        host = start_host(deployment(P, "fail", trigger="put_timeout_s = 0.5"), i.client_env, wait_for="' running: tasks")
        assert f"{P}Trigger: the IOC did not answer within put_timeout_s (0.5 s): starting anyway" in host.output()
        i.start()
        host.wait_output(f"{P}TaskStatus: writing statuses to {P}TaskStatus.RVAL")
        host.wait_output("monitoring ")
        with i.client() as c:
            watch = Watch(c, [P + "TaskStatus"])
            watch.wait(lambda ev: len(ev) >= 1)
            c.put(P + "Trigger", 1)
            watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [TASK_FAIL])
    finally:
        i.kill()


def test_an_ioc_that_stalls_while_the_outcome_is_written_gets_it_in_order_once_it_answers(ioc, start_host, tmp_path):
    """The IOC stops answering (SIGSTOP: a stalled IOC or a network break
    shorter than the connection timeout) while a run ends: its TaskStatus
    write gets no answer. Once the IOC answers again, it must get the run's
    status before Busy=0: before, the writes after the failed one went on,
    and a client saw Busy=0 with the previous run's TaskStatus (or, if they
    all failed, Busy=1 for ever)."""
    i = ioc()
    P = i.prefix
    go = tmp_path / "go"
    host = start_host(deployment(P, "fail_when", trigger=f'params = {{file = "{go}"}}\nput_timeout_s = 0.5'),
                      i.client_env)
    assert i.proc is not None
    with i.client() as c:
        watch = Watch(c, [P + "Busy"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [1])  # the run started
        i.proc.send_signal(signal.SIGSTOP)
        try:
            go.touch()  # the run fails while the IOC is stalled
            host.wait_output(f"put {P}TaskStatus.RVAL = 1 failed: no answer within 0.5 s")
        finally:
            i.proc.send_signal(signal.SIGCONT)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [0])
        assert int(c.get(P + "TaskStatus")) == TASK_FAIL
        assert c.get(P + "Trigger") == 0
    assert f"put {P}TaskStatus.RVAL = 1 done after" in host.output()


def test_an_ioc_restarted_during_a_run_shows_trigger_and_busy_set_until_its_status(ioc, start_host, tmp_path):
    """A restarted IOC comes back with Trigger=0 and Busy=0 while the run
    it asked for still runs: a client waiting for Trigger=0 (epics-bridge's)
    would read the default TaskStatus as the run's. bridgehost sets both to
    1 again, and its own put of 1 to Trigger is not taken for a client's."""
    i = ioc()
    P = i.prefix
    go = tmp_path / "go"
    host = start_host(deployment(P, "fail_when", trigger=f'params = {{file = "{go}"}}\nput_timeout_s = 1'),
                      i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "Busy"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [1])
        watch.close()
    i.kill()
    i.start()  # same ports, records at their defaults
    with i.client() as c:
        watch = Watch(c, [P + "Trigger", P + "Busy"])
        watch.wait(lambda ev: {p[len(P):] for p, v, _ in ev if int(v) == 1} == {"Trigger", "Busy"})
        go.touch()
        watch.wait(lambda ev: [int(v) for p, v, _ in ev if p.endswith("Trigger")][-1:] == [0])
        assert int(c.get(P + "TaskStatus")) == TASK_FAIL
        assert int(c.get(P + "Busy")) == 0
    wait_runs(host, 1)
    assert runs(host) == 1  # the restored Trigger=1 ran nothing
    assert "put(s) to" not in host.output()


def test_a_put_to_an_ioc_restarted_while_bridgehost_was_not_looking_is_run(ioc, start_host):
    """The IOC restarts and a client puts Trigger=1 before bridgehost has
    reconnected (bridgehost is held with SIGSTOP, so the put comes first):
    the new IOC's TriggerCount reads 1, as many as bridgehost had seen from
    the old one, and was taken for a network break with no put missed: the
    put was lost without a word (3 puts: 2 runs). The Boot record's
    timestamp tells the restart: every count of the new IOC is a put."""
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "trivial"), i.client_env)
    with i.client() as c:
        watch = Watch(c, [P + "Busy"])
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-2:] == [1, 0])
        watch.close()
    i.kill()
    host.wait_output(f"lost {P}TriggerCount")  # its connection closed (a stopped host would hold the IOC's port)
    host.proc.send_signal(signal.SIGSTOP)
    try:
        # over TCP: bridgehost's client shares the UDP search port, and stopped it swallows searches
        i.start(direct=True)
        with i.direct_client() as c:
            c.put(P + "Trigger", 1)
    finally:
        host.proc.send_signal(signal.SIGCONT)
    wait_runs(host, 2)
    assert f"1 put(s) to {P}Trigger on the restarted IOC before bridgehost reconnected: serving them" in host.output()
    with i.client() as c:
        watch = Watch(c, [P + "Trigger"])
        watch.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [0])
    assert runs(host) == 2
