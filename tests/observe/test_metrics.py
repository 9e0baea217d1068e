"""The ``prometheus`` transport as Prometheus meets it: /metrics scraped
over real HTTP from a real ``bridgehost run`` process, checked with
``promtool check metrics`` and read with prometheus_client's own parser."""

from __future__ import annotations

import subprocess

from prometheus_client.parser import text_string_to_metric_families

from bhprom_support import WAIT_S, wait_until
from bridgehost_ipc.client import Client


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a page: (name, its labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


def test_the_page_passes_promtool_check_metrics(host, promtool):
    host.call("rig.copy", {"x": 1})
    page = host.scrape()
    check = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=WAIT_S)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr


def test_a_request_is_counted_by_task_and_status(host):
    before = samples(host.scrape())
    assert host.call("rig.copy", {"x": 1}).success
    assert not host.call("rig.interlock").success
    assert not host.call("rig.nope").success  # an unknown topic: a refusal, never a label
    page = samples(host.scrape())

    def grew(name: str, **labels: str) -> float:
        return value(page, name, **labels) - value(before, name, **labels)

    assert grew("bridgehost_jobs_total", task="rig.copy", status="SUCCESS") == 1
    assert grew("bridgehost_jobs_total", task="rig.interlock", status="TASK_FAIL") == 1
    assert grew("bridgehost_job_duration_seconds_count", task="rig.copy") == 1
    assert grew("bridgehost_job_duration_seconds_bucket", task="rig.copy", le="+Inf") == 1
    assert grew("bridgehost_requests_refused_total", cause="unknown_task") == 1
    tasks = {dict(labels).get("task") for _, labels in page} - {None}
    assert tasks == {"rig.copy", "rig.interlock", "rig.hold"}


def test_running_queued_and_refused_by_a_full_queue(host):
    """rig.hold runs 2 at once and queues 1: a 4th request is refused BUSY."""
    release = host.folder / "release-queue"
    before = samples(host.scrape())
    with Client(host.endpoint) as client:
        tids = [client.send("rig.hold", {"release": str(release)}) for _ in range(4)]
        # Requests on one socket reach the host in order: once this is answered, all four have.
        assert client.call("rig.copy", {}, timeout_s=WAIT_S).success
        page = samples(host.scrape())
        release.write_text("go")
        responses: list = []
        for tid in tids:
            wait_until(lambda tid=tid: _take(client, tid, responses), f"the response to transaction id {tid}")
    assert value(page, "bridgehost_jobs_running", task="rig.hold") == 2
    # the three accepted requests are in flight on the zmq transport; the refused one was answered
    assert value(page, "bridgehost_ipc_requests_in_flight", transport="zmq") == 3
    assert value(page, "bridgehost_ipc_peers", transport="zmq") >= 1
    assert value(page, "bridgehost_jobs_queued", task="rig.hold") == 1
    refused = value(page, "bridgehost_requests_refused_total", cause="queue_full")
    assert refused - value(before, "bridgehost_requests_refused_total", cause="queue_full") == 1
    assert sorted(r.success for r in responses) == [False, True, True, True]


def _take(client: Client, tid: int, into: list) -> bool:
    client.poll(0.05)
    response = client.take_response(tid)
    if response is not None:
        into.append(response)
    return response is not None
