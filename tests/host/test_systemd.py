"""The systemd watchdog kind against a local NOTIFY_SOCKET: READY once the
host runs, WATCHDOG pings while the event loop runs and none while it is
stalled, STATUS, STOPPING."""

import asyncio
import os
import socket
import uuid

import pytest

from bridgehost.jobs import Request
from bridgehost.systemd import Notifier, notify_address

CONFIG = """
[[tasks]]
name = "block"
kind = "callable"
target = "targets:block_loop"
timeout_s = 60

[[watchdogs]]
kind = "systemd"
stall_tolerance_s = 0.5
"""


@pytest.fixture
def notify_socket(monkeypatch):
    """A datagram socket bound in the abstract namespace, named by
    $NOTIFY_SOCKET as systemd does; non-blocking, for loop.sock_recv."""
    name = f"@bridgehost-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_address(name))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    # WatchdogSec=0.6 s: a ping every 0.3 s, few enough that the socket's
    # queue (net.unix.max_dgram_qlen, 10 here) holds them while the loop is blocked.
    monkeypatch.setenv("WATCHDOG_USEC", "600000")
    yield sock
    sock.close()


class Messages:
    """The datagrams received so far, each a dict of its assignments."""

    def __init__(self, sock):
        self.sock = sock
        self.seen: list[dict[str, str]] = []

    async def until(self, predicate, what: str) -> dict[str, str]:
        """Receive until a message satisfies ``predicate``; fails after a
        generous bound (a hang, not a timing check)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(30):
            while True:
                data = await loop.sock_recv(self.sock, 4096)
                message = dict(line.split("=", 1) for line in data.decode().split("\n"))
                self.seen.append(message)
                if predicate(message):
                    return message
        raise AssertionError(f"no {what}")


def test_ready_pings_stall_and_stopping(make_host, notify_socket):
    async def main():
        messages = Messages(notify_socket)
        host = make_host(CONFIG)
        await host.start()
        ready = await messages.until(lambda m: "READY" in m, "READY=1")
        await messages.until(lambda m: "WATCHDOG" in m, "a ping after READY")
        blocked = host.submit(Request(task="block", params={"s": 3, "socket": notify_socket.getsockname()}))
        await messages.until(lambda m: "TEST" in m, "the end of the stall")
        stall = len(messages.seen) - 1
        await blocked
        await messages.until(lambda m: "WATCHDOG" in m, "a ping after the stall")
        await host.stop()
        stopping = await messages.until(lambda m: "STOPPING" in m, "STOPPING=1")
        return ready, stopping, messages.seen, stall

    ready, stopping, seen, stall_end = asyncio.run(main())
    assert ready == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "serving 1 task(s): 0 job(s) running, 0 waiting"}
    assert stopping == {"STOPPING": "1", "STATUS": "stopping"}
    stalled = [i for i, m in enumerate(seen) if m.get("STATUS", "").startswith("event loop stalled for")]
    assert len(stalled) == 1 and stalled[0] < stall_end
    assert "withheld" in seen[stalled[0]]["STATUS"]
    # Not one ping from the moment the stall was noticed until the loop ran again.
    assert not any("WATCHDOG" in m for m in seen[stalled[0] : stall_end])
    assert any("WATCHDOG" in m for m in seen[:stalled[0]]) and any("WATCHDOG" in m for m in seen[stall_end:])
    # While the job ran, the status said so.
    assert any(m.get("STATUS", "").endswith("1 job(s) running, 0 waiting") for m in seen)


def test_no_pings_when_the_watchdog_is_another_process_s(make_host, notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))

    async def main():
        messages = Messages(notify_socket)
        host = make_host(CONFIG)
        await host.start()
        await messages.until(lambda m: "READY" in m, "READY=1")
        await host.stop()
        await messages.until(lambda m: "STOPPING" in m, "STOPPING=1")
        return messages.seen

    seen = asyncio.run(main())
    assert not any("WATCHDOG" in m for m in seen)


def test_without_notify_socket_it_warns_and_sends_nothing(make_host, monkeypatch, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    async def main():
        host = make_host(CONFIG)
        await host.start()
        await host.stop()

    asyncio.run(main())
    assert "$NOTIFY_SOCKET is not set" in caplog.text


def test_a_notifier_to_a_socket_nobody_binds_reports_failure(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "absent.sock"))
    assert notifier.send(READY=1) is False
    assert "sd_notify to" in caplog.text and "absent.sock" in caplog.text
    notifier.close()
