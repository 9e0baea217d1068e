"""Logging: human lines by default, JSON lines on request, a rotating file
when configured; every line logged while a job runs names its job and the
source's ref (the ZeroMQ transaction id), whatever logger wrote it."""

import asyncio
import json
import logging

import pytest

from bridgehost import logs
from bridgehost.jobs import Request


@pytest.fixture
def restore_logging():
    """logs.configure replaces the root handlers: put pytest's back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


TASKS = """
[[tasks]]
name = "a"
kind = "callable"
target = "targets:log_async"

[[tasks]]
name = "s"
kind = "callable"
target = "targets:log_sync"
"""


def run_jobs(make_host):
    async def main():
        host = make_host(TASKS)
        await host.start()
        await host.submit(Request(task="a", params={"n": 1}, id="job-a", source="zmq", ref="17"))
        await host.submit(Request(task="s", params={"n": 2}, id="job-s", source="zmq", ref="18"))
        await host.submit(Request(task="nope", id="job-x", ref="19"))
        logging.getLogger("acme.analysis").info("between jobs")
        await host.stop()

    asyncio.run(main())


def test_json_lines_in_a_file_carry_job_id_and_ref_from_any_logger(make_host, tmp_path, restore_logging):
    path = tmp_path / "host.log"
    logs.configure("INFO", format="json", file=path, host="rig-1")
    run_jobs(make_host)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_message = {line["message"]: line for line in lines}
    for message, job, task, ref in [("async step 1", "job-a", "a", "17"), ("sync step 2", "job-s", "s", "18")]:
        line = by_message[message]
        assert (line["logger"], line["job_id"], line["task"], line["ref"]) == ("acme.analysis", job, task, ref)
        assert line["level"] == "INFO" and line["host"] == "rig-1" and line["time"].endswith("+00:00")
    assert "job_id" not in by_message["between jobs"]  # outside a job, nothing is made up
    [rejected] = [line for line in lines if line.get("job_id") == "job-x"]
    assert rejected["level"] == "WARNING" and rejected["ref"] == "19" and "REJECTED" in rejected["message"]


def test_human_lines_end_with_the_job(make_host, tmp_path, restore_logging):
    path = tmp_path / "host.log"
    logs.configure("INFO", file=path)
    run_jobs(make_host)
    text = path.read_text()
    assert "INFO    acme.analysis: async step 1 [task='a' job=job-a ref=17]\n" in text
    assert "acme.analysis: sync step 2 [task='s' job=job-s ref=18]\n" in text
    assert "acme.analysis: between jobs\n" in text


def test_an_exception_is_one_json_line(tmp_path, restore_logging):
    path = tmp_path / "host.log"
    logs.configure("INFO", format="json", file=path)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logging.getLogger("acme").exception("it failed\non two lines")
    [line] = path.read_text().splitlines()
    record = json.loads(line)
    assert record["message"] == "it failed\non two lines"
    assert record["exception"].startswith("Traceback") and "ValueError: bad" in record["exception"]


def test_the_file_rotates_by_size_keeping_the_configured_backups(tmp_path, restore_logging):
    path = tmp_path / "host.log"
    logs.configure("INFO", format="json", file=path, max_bytes=2000, backups=2)
    for n in range(200):
        logging.getLogger("acme").info("line %d", n)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["host.log", "host.log.1", "host.log.2"]
    numbers = []
    for name in ("host.log.2", "host.log.1", "host.log"):
        content = (tmp_path / name).read_text()
        assert len(content.encode()) <= 2000
        numbers += [int(json.loads(line)["message"].split()[1]) for line in content.splitlines()]
    assert numbers == list(range(200 - len(numbers), 200))  # the newest lines, in order, none torn


def test_rate_limited_log_one_line_per_cause_per_interval_then_the_count(caplog):
    now = [0.0]
    lines = logs.RateLimitedLog(logging.getLogger("bridgehost.test"), interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="bridgehost.test"):
        for i in range(1000):
            lines.warning("flood", "peer %d is not reading", i)
        lines.warning("other", "another cause is not hidden")
        now[0] = 10.5
        lines.warning("flood", "peer %d is not reading", 1000)
        lines.warning("flood", "peer %d is not reading", 1001)
        lines.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "peer 0 is not reading",
        "another cause is not hidden",
        "peer 1000 is not reading (and 999 more like it, not logged)",
        "1 more line(s) of cause flood not logged",
    ]
    assert (lines.total, lines.suppressed) == (1003, 1000)


def test_a_log_file_on_a_full_device_is_one_error_then_counted(restore_logging, capfd):
    """/dev/full: every write fails with ENOSPC, as on a full disk."""
    logs.configure("INFO", file="/dev/full")
    log = logging.getLogger("bridgehost.test")
    for i in range(200):
        log.warning("line %d", i)
    _, err = capfd.readouterr()
    assert "Logging error" not in err and "Traceback" not in err
    errors = [line for line in err.splitlines() if "cannot write to the log file" in line]
    assert errors == [("bridgehost: cannot write to the log file /dev/full: No space left on device; its lines "
                       "are lost (counted) until it can be written again, stderr still gets every line")]
    assert err.count("WARNING bridgehost.test: line ") == 200  # stderr still has every line
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs.LogFileHandler))
    assert handler.lost == 200
