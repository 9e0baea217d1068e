"""The heartbeat watchdog and reconnection, against a real soft IOC:
bridgehost runs as its own process so its exit code is observed."""

from __future__ import annotations

import time

from epics_support import WAIT_S, Watch, deployment

EXIT_STUCK = 1


def test_ioc_restart_serves_triggers_and_heartbeat_again(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(deployment(P, "trivial", heartbeat="period_s = 0.2\nmax_stuck_cycles = 1000"), i.client_env)
    with i.client() as c:
        busy = Watch(c, [P + "Busy"])  # before the put: the first trigger is served in a few ms
        busy.wait(lambda ev: len(ev) >= 1)
        c.put(P + "Trigger", 1)
        busy.wait(lambda ev: [int(v) for _, v, _ in ev][-2:] == [1, 0])
        busy.close()
    i.kill()
    host.wait_output("heartbeat put")  # it noticed: a failed heartbeat put
    i.start()  # a new IOC process on the same ports: records back at their defaults
    with i.client() as c:
        watch = Watch(c, [P + "Heartbeat", P + "TaskDuration"])
        watch.wait(lambda ev: len({int(v) for p, v, _ in ev if p.endswith("Heartbeat")}) == 2)  # toggling again
        deadline = time.monotonic() + WAIT_S
        while host.output().count("monitoring ") < 2:  # the trigger's monitor reconnects by itself
            assert time.monotonic() < deadline, host.output()
            time.sleep(0.05)
        c.put(P + "Trigger", 1)
        watch.wait(lambda ev: any(p.endswith("TaskDuration") and float(v) > 0 for p, v, _ in ev))
    assert host.output().count("SUCCESS in") == 2
    assert host.proc.poll() is None


def test_ioc_gone_for_good_exits_1_after_max_stuck_cycles(ioc, start_host):
    i = ioc()
    P = i.prefix
    host = start_host(
        deployment(P, "trivial", heartbeat="period_s = 0.2\nput_timeout_s = 0.3\nmax_stuck_cycles = 3"), i.client_env
    )
    with i.client() as c:
        Watch(c, [P + "Heartbeat"]).wait(lambda ev: len(ev) >= 2)
    i.kill()
    assert host.wait_exit() == EXIT_STUCK
    out = host.output()
    assert "failed (3 of 3 in a row)" in out
    assert "exiting with code 1" in out and "max_stuck_cycles" in out


def test_a_stalled_loop_stops_the_heartbeat_then_exits_1(ioc, start_host):
    """A task that blocks the event loop: the heartbeat stops within the
    tolerance, and the process exits 1 after exit_after_s."""
    i = ioc()
    P = i.prefix
    tolerance, period, exit_after = 1.0, 0.2, 6.0
    host = start_host(
        deployment(P, "block_loop", heartbeat=f"period_s = {period}\ntolerance_s = {tolerance}\nexit_after_s = {exit_after}"),
        i.client_env,
    )
    with i.client() as c:
        watch = Watch(c, [P + "Heartbeat"])
        watch.wait(lambda ev: len(ev) >= 3)
        stalled_at = time.time()
        c.put(P + "Trigger", 1)
        assert host.wait_exit() == EXIT_STUCK
        stamps = [t for _, _, t in watch.events]
    # The IOC stamped each pulse. The loop stops a few ms after the put; the
    # liveness tick adds 0.25 s; 2 s of slack for a loaded machine. Pulses
    # that never stopped would go on until the exit, exit_after_s later.
    assert max(stamps) < stalled_at + tolerance + 0.25 + 2.0 < stalled_at + exit_after
    assert stamps[-1] > stalled_at - 1.0  # it was pulsing right up to the stall
    out = host.output()
    assert "stops pulsing" in out and "has not advanced" in out
