"""Every example and recipe of Automancer's docs, "Developing processes"
(https://github.com/slietar/automancer),
run against bridgehost-steps.

The docs' code is kept as written except where it cannot run as printed:
``def process`` holding ``await`` becomes ``async def``; ``am.X`` becomes
``bridgehost_steps.X``; typos (``lambda session.connect``, ``smtp.``,
``msg``) are fixed; the two jump examples, whose ``index = ...`` inside a
``for`` loop has no effect, are written with the ``while`` loop they mean.
Servers (HTTP, SMTP) are real, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import smtplib
import socketserver
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.mime.text import MIMEText
from typing import Literal

import msgspec
import pytest

import bridgehost_steps as am
from bridgehost_steps import JumpRequest, PauseRequest, SwapRequest
from bridgehost_steps.machine import Control, State
from bridgehost_steps.run_types import Topic
from bridgehost_steps.steps import step
from stepkit import Harness, until

C, S = Control, State


def run(coro):
    return asyncio.run(coro)


# -- "Creating a simple process" -----------------------------------------------


class Quantity(msgspec.Struct):
    value: float  # seconds, SI


@step(data=Quantity)
async def simple(data, context):
    await context.wait(asyncio.sleep(data.value))
    return data.value


def test_simple_process_with_quantity_data():
    async def scenario():
        h = Harness(simple, data=Quantity(0.01))
        assert (await h.outcome())[1]["result"] == 0.01

    run(scenario())


# -- "Halting" ---------------------------------------------------------------------


def test_halting_is_intercepted_as_cancelled_error():
    async def scenario():
        log = []

        async def run_step1():
            await asyncio.sleep(30)

        async def run_step2():
            log.append("step2")

        async def process(data, context):
            try:
                await run_step1()
                await run_step2()
            except asyncio.CancelledError:
                log.append("intercepted")
                raise

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.HALT)
        assert (await h.outcome())[0] == "CANCELLED"
        assert log == ["intercepted"]

    run(scenario())


# -- "Pausing" -----------------------------------------------------------------------


def test_pausing_with_periodic_checkpoints():
    async def scenario():
        done = []

        async def run_step(index):
            await asyncio.sleep(0.002)
            done.append(index)

        async def process(data, context):
            context.pausable = True

            for index in range(10):
                await run_step(index)
                context.send_location({"index": index})

                await context.checkpoint()

        h = Harness(process)
        await until(lambda: len(done) >= 2, "two steps")
        h.run.control(C.PAUSE)
        await h.reach(S.PAUSED)
        count = len(done)
        await asyncio.sleep(0.05)
        assert len(done) == count  # nothing runs while paused
        h.run.control(C.RESUME)
        await h.outcome()
        assert done == list(range(10))

    run(scenario())


def test_pausing_with_wait_restarts_the_long_step_after_resuming():
    async def scenario():
        starts = []

        async def long_step():
            starts.append(time.monotonic())
            await asyncio.sleep(0.05 if len(starts) > 1 else 30)

        async def process(data, context):
            context.pausable = True

            while True:
                try:
                    await context.wait(long_step())
                except PauseRequest:
                    context.send_location({"paused": True})
                    await context.checkpoint()
                else:
                    break

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)
        await h.reach(S.PAUSED)
        assert h.run.location == {"paused": True}
        h.run.control(C.RESUME)
        assert (await h.outcome())[0] == "ok"
        assert len(starts) == 2

    run(scenario())


# -- "Jumping" ---------------------------------------------------------------------


class Point(msgspec.Struct):
    index: int


def test_jump_between_steps_of_a_five_step_process():
    async def scenario():
        ran = []

        async def run_step(index):
            ran.append(index)
            await asyncio.sleep(30 if index == 1 else 0)

        @step(point=Point)
        async def process(context):
            index = context.point.index if context.point else 0
            while index < 5:
                try:
                    await context.wait(run_step(index))
                    index += 1
                except JumpRequest as e:
                    assert e.old_point is None
                    index = e.point.index

        h = Harness(process)
        await until(lambda: ran == [0, 1], "step 1 runs")
        assert h.run.control(C.JUMP, point={"index": 3}).accepted
        await h.outcome()
        assert ran == [0, 1, 3, 4]
        bad = Harness(process)
        await until(lambda: 1 in ran[4:], "step 1 runs again")
        answer = bad.run.control(C.JUMP, point={"index": "three"})
        assert not answer.accepted and "Expected `int`" in answer.reason
        bad.run.control(C.HALT)
        await bad.outcome()

    run(scenario())


def test_jump_to_the_current_step_does_not_restart_it():
    async def scenario():
        starts = []
        release = asyncio.Event()

        async def run_step(index):
            starts.append(index)
            if index == 0:
                await release.wait()

        @step(point=Point)
        async def process(context):
            index = context.point.index if context.point else 0
            while index < 3:
                coro = asyncio.ensure_future(run_step(index))
                while True:
                    try:
                        await context.wait(asyncio.shield(coro))
                    except JumpRequest as e:
                        if (new_index := e.point.index) == index:
                            continue  # the same step: keep its running coroutine
                        coro.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await coro
                        index = new_index
                        break
                    else:
                        index += 1
                        break

        h = Harness(process)
        await asyncio.sleep(0.01)
        assert h.run.control(C.JUMP, point={"index": 0}).accepted
        await asyncio.sleep(0.01)
        release.set()
        await h.outcome()
        assert starts == [0, 1, 2]

    run(scenario())


# -- "Swapping" --------------------------------------------------------------------


class Address(msgspec.Struct):
    address: str


class HttpServer(str):
    """The server's base URL; ``release()`` lets /slow requests answer."""

    stop: threading.Event

    def release(self) -> None:
        self.stop.set()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """A real HTTP server on 127.0.0.1: /slow answers after 30 s (or on
    ``release()``), anything else at once with its path."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow":
                stop.wait(30)
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = HttpServer(f"http://127.0.0.1:{server.server_address[1]}")
    url.stop = stop
    yield url
    stop.set()
    server.shutdown()
    server.server_close()


def test_swap_restarts_an_http_request_with_the_new_address(http_server):
    async def fetch_http(address):
        async def get():
            return await asyncio.to_thread(lambda: urllib.request.urlopen(address, timeout=30).read().decode())

        return await get()

    async def scenario():
        @step(data=Address)
        async def process(context):
            data = context.data

            while True:
                try:
                    return await context.wait(fetch_http(data.address))
                except SwapRequest as e:
                    assert e.old_data.address.endswith("/slow")
                    data = e.data

        h = Harness(process, data=Address(f"{http_server}/slow"))
        await asyncio.sleep(0.05)
        assert h.run.control(C.SWAP, data={"address": f"{http_server}/fast"}).accepted
        assert (await h.outcome())[1]["result"] == "/fast"
        http_server.release()  # the abandoned /slow request's thread can end

    run(scenario())


# -- Recipes -----------------------------------------------------------------------


def test_recipe_single_synchronous_action():
    async def scenario():
        ran = []

        def run_synchronous_action():
            time.sleep(0.02)
            ran.append(threading.current_thread() is not threading.main_thread())

        async def process(context):
            context.send_duration(4.5)  # Estimated 4.5 seconds

            await am.shield(asyncio.to_thread(run_synchronous_action))

        h = Harness(process)
        await h.outcome()
        assert ran == [True] and h.of(Topic.DURATION)[0]["duration_s"] == 4.5

    run(scenario())


def test_recipe_single_synchronous_action_finishes_before_a_halt_ends_the_process():
    async def scenario():
        events = []

        def run_synchronous_action():
            time.sleep(0.1)
            events.append("action finished")

        async def process(context):
            try:
                await am.shield(asyncio.to_thread(run_synchronous_action))
            finally:
                events.append("cleanup")

        h = Harness(process)
        await asyncio.sleep(0.02)
        h.run.control(C.HALT)
        assert (await h.outcome())[0] == "CANCELLED"
        assert events == ["action finished", "cleanup"]

    run(scenario())


@dataclass
class Location:
    phase: Literal[0, 1, 2]

    def export(self):
        return {"phase": self.phase}


def test_recipe_multiple_synchronous_actions_pause_between_them():
    async def scenario():
        ran = []
        gate = threading.Event()

        def run_synchronous_action1():
            gate.wait(10)
            ran.append(1)

        def run_synchronous_action2():
            ran.append(2)

        async def process(context):
            context.pausable = True  # added: the recipe's checkpoint() is where it may pause
            context.send_location(Location(0))
            context.send_duration(2.0)

            await am.shield(asyncio.to_thread(run_synchronous_action1))

            context.send_location(Location(1))
            context.send_duration(1.0)

            await context.checkpoint()
            await am.shield(asyncio.to_thread(run_synchronous_action2))

            context.send_location(Location(2))

        h = Harness(process)
        await asyncio.sleep(0.01)
        h.run.control(C.PAUSE)  # during action 1: honoured at the checkpoint after it
        gate.set()
        await h.reach(S.PAUSED)
        assert ran == [1] and h.run.location == {"phase": 1}
        h.run.control(C.RESUME)
        await h.outcome()
        assert ran == [1, 2]
        assert [d["location"] for d in h.of(Topic.LOCATION)] == [{"phase": 0}, {"phase": 1}, {"phase": 2}]
        assert [d["duration_s"] for d in h.of(Topic.DURATION)] == [2.0, 1.0]

    run(scenario())


def test_recipe_run_actions_helper():
    async def scenario():
        async def process(context):
            return await am.run_actions(context, lambda: 1, lambda: 2)

        h = Harness(process)
        assert (await h.outcome())[1]["result"] == [1, 2]

    run(scenario())


async def run_asynchronous_action():
    raise ConnectionError("instrument not answering")


def test_recipe_report_an_error_or_warning():
    async def scenario():
        async def process(context):
            try:
                await run_asynchronous_action()
            except Exception as e:
                context.send_error(am.GenericDiagnostic(e))
                context.send_warning(am.GenericDiagnostic(e))

        h = Harness(process)
        assert (await h.outcome())[0] == "ok"
        diag = {"kind": "generic", "message": "instrument not answering", "exception": "ConnectionError"}
        assert [(a["errors"], a["warnings"]) for a in h.of(Topic.ANALYSIS)] == [([diag], []), ([], [diag])]

    run(scenario())


def test_recipe_report_a_critical_error_is_recoverable():
    async def scenario():
        async def process(context):
            try:
                await run_asynchronous_action()
            except Exception as e:
                raise am.ProcessFailureError from e

        h = Harness(process, recovery_timeout_s=0.05)
        status, error = await h.outcome()
        assert status == "TASK_FAIL" and "ProcessFailureError" in str(error)

    run(scenario())


def test_recipe_report_an_effect():
    async def scenario():
        async def process(context):
            context.send_effect(am.FileCreatedEffect("file.txt"))

        h = Harness(process)
        await h.outcome()
        assert h.of(Topic.ANALYSIS)[0]["effects"] == [{"kind": "file-created", "path": "file.txt"}]

    run(scenario())


class Mail(msgspec.Struct):
    contents: str
    subject: str
    sender: str
    recipient: str
    address: str
    username: str
    password: str


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, list[bytes]]]:
    """A minimal real SMTP server on 127.0.0.1 (RFC 5321 replies, AUTH PLAIN
    for user "lab" / "secret"); yields its address and the messages received."""
    received: list[bytes] = []

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self):
            self.reply("220 test ESMTP")
            while line := self.rfile.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"EHLO":
                    self.reply("250-test")
                    self.reply("250 AUTH PLAIN")
                elif verb == b"AUTH":
                    credentials = base64.b64decode(line.split()[2])
                    self.reply("235 ok" if credentials == b"\0lab\0secret" else "535 bad credentials")
                elif verb == b"DATA":
                    self.reply("354 go on")
                    body = b""
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        body += chunk
                    received.append(body)
                    self.reply("250 queued")
                elif verb == b"QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@step(data=Mail)
async def send_email(context):
    message = MIMEText(context.data.contents)

    message["Subject"] = context.data.subject
    message["From"] = context.data.sender
    message["To"] = context.data.recipient

    session = smtplib.SMTP()

    try:
        await am.shield(asyncio.to_thread(lambda: session.connect(context.data.address)))
        await context.checkpoint()

        try:
            await am.shield(asyncio.to_thread(lambda: session.login(context.data.username, context.data.password)))
        except smtplib.SMTPAuthenticationError as e:
            raise am.ProcessFailureError("Invalid credentials") from e

        await context.checkpoint()

        await am.shield(
            asyncio.to_thread(
                lambda: session.sendmail(context.data.sender, [context.data.recipient], message.as_string())
            )
        )
        await context.checkpoint()
    except smtplib.SMTPException as e:
        raise am.ProcessFailureError from e
    finally:
        await am.shield(asyncio.to_thread(lambda: session.quit()))


def test_recipe_send_an_email_and_recover_from_bad_credentials(smtp_server):
    address, received = smtp_server
    mail = {
        "contents": "Run 7 finished.", "subject": "run 7", "sender": "rig@lab", "recipient": "op@lab",
        "address": address, "username": "lab", "password": "wrong",
    }

    async def scenario():
        h = Harness(send_email, data=send_email.__bridgehost_step__["data"](**mail))
        await h.reach(S.FAULTED)
        assert "Invalid credentials" in h.run.status().error
        assert h.run.control(C.RETRY, data={**mail, "password": "secret"}, has_data=True).accepted
        assert (await h.outcome())[0] == "ok"

    run(scenario())
    assert len(received) == 1 and b"Run 7 finished." in received[0]


def test_recipe_make_an_http_request(http_server):
    async def scenario():
        async def process(context):
            try:
                return await asyncio.to_thread(lambda: urllib.request.urlopen(context.data, timeout=10).read().decode())
            except OSError as e:  # urllib's HTTPError/URLError; Automancer's recipe uses urllib3
                raise am.ProcessFailureError from e

        h = Harness(process, data=f"{http_server}/status")
        assert (await h.outcome())[1]["result"] == "/status"
        h = Harness(process, data="http://127.0.0.1:1/", recovery_timeout_s=0.05)
        assert (await h.outcome())[0] == "TASK_FAIL"

    run(scenario())
