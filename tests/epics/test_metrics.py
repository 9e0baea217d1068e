"""The epics metrics (``register_metrics``) scraped from a real
``bridgehost run`` against a real soft IOC: the Trigger channel connected,
a refused trigger counted, heartbeat pulses counted."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from epics_support import WAIT_S, Watch, deployment


def scrape(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=WAIT_S) as page:
        text = page.read().decode()
    return {
        (s.name, s.labels.get("pv", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("bridgehost_epics_")
    }


def test_trigger_connection_refusals_and_heartbeat_pulses(ioc, start_host):
    i = ioc()
    P = i.prefix
    config = deployment(P, "slow", trigger='on_busy = "refuse"\nparams = { sleep_s = 3 }', heartbeat="period_s = 0.2")
    config += '\n[[transports]]\nkind = "prometheus"\nlisten = "127.0.0.1:0"\n'
    host = start_host(config, i.client_env)
    url = next(line for line in host.wait_output("serving http://").splitlines() if "serving http://" in line)
    url = url.split("serving ", 1)[1].split()[0]
    with i.client() as c:
        busy = Watch(c, [P + "Busy"])
        busy.wait(lambda ev: len(ev) >= 1)
        c.put(P + "Trigger", 1)
        busy.wait(lambda ev: [int(v) for _, v, _ in ev][-1:] == [1])
        c.put(P + "Trigger", 1)  # while the first runs: refused
        deadline = time.monotonic() + WAIT_S
        while (page := scrape(url))[("bridgehost_epics_triggers_refused_total", P + "Trigger")] < 1:
            assert time.monotonic() < deadline, page
            time.sleep(0.05)
        busy.close()
    assert page[("bridgehost_epics_trigger_connected", P + "Trigger")] == 1
    assert page[("bridgehost_epics_heartbeat_pulses_total", P + "Heartbeat")] >= 1
    assert page[("bridgehost_epics_heartbeat_failed_puts", P + "Heartbeat")] == 0
