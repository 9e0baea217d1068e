"""``bridgehost status`` and ``bridgehost top``: a running host's
``host.status`` (``bridgehost.status.HostStatus``), fetched over ZeroMQ and
shown with rich (https://rich.readthedocs.io/).

``status`` prints it once (``--json``: as the host sent it). ``top`` polls
it once a second and redraws: tasks with their load and rate, the running
jobs with their elapsed time, the recent failures; ``q`` or Ctrl-C quits.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from bridgehost.status import HostStatus

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from bridgehost_ipc.client import Client

REFUSED = ("BUSY", "REJECTED")
"""Statuses of a request answered without running."""
POLL_S = 1.0
"""How often ``top`` asks for ``host.status``, seconds."""


class StatusError(Exception):
    """``host.status`` was not answered, or answered with an error."""


def fetch(client: Client, timeout_s: float) -> HostStatus:
    """The host's status. Raises ``StatusError`` naming the endpoint when
    it does not answer within ``timeout_s`` or answers with an error (a
    host older than ``host.status``)."""
    try:
        response = client.call("host.status", timeout_s=timeout_s)
    except TimeoutError as e:
        raise StatusError(str(e)) from None
    if not response.success:
        raise StatusError(f"host.status failed at {client.endpoint}: {response.error_message}")
    try:
        return msgspec.convert(response.data, HostStatus)
    except msgspec.ValidationError as e:
        raise StatusError(f"host.status from {client.endpoint} is not a status this command reads: {e}") from None


def duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 02 min"``; ``42.5`` -> ``"42.5 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, _ = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds) % 60:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _counts(finished: dict[str, int]) -> tuple[int, int, int]:
    """(succeeded, failed, refused) of a task's ``finished`` by status."""
    ok = finished.get("SUCCESS", 0)
    refused = sum(finished.get(s, 0) for s in REFUSED)
    return ok, sum(finished.values()) - ok - refused, refused


def render(status: HostStatus, rates: dict[str, float] | None = None, note: str = "") -> RenderableType:
    """The status as rich tables; ``rates`` adds each task's jobs per
    second, ``note`` goes on the first line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        (status.name, "bold"), f"  bridgehost {status.version}  ", (status.state, "green" if status.state == "running" else "yellow"),
        f"  up {duration(status.uptime_s)}",
        (f"   {note}" if note else "", "dim"),
    )
    tasks = Table(title="tasks", title_justify="left", expand=False)
    for column in ("task", "kind", "running", "queued", "ok", "failed", "refused"):
        tasks.add_column(column, justify="left" if column in ("task", "kind") else "right")
    if rates is not None:
        tasks.add_column("jobs/s", justify="right")
    for task in status.tasks:
        ok, failed, refused = _counts(task.finished)
        row: list[RenderableType] = [
            task.name, task.kind, f"{task.running}/{task.concurrency}", f"{task.queued}/{task.queue_size}",
            str(ok), Text(str(failed), "red" if failed else ""), str(refused),
        ]
        if rates is not None:
            row.append(f"{rates.get(task.name, 0.0):.1f}")
        tasks.add_row(*row)
    parts: list[RenderableType] = [head, tasks]
    if status.running:
        running = Table(title="running", title_justify="left")
        for column in ("task", "job", "source", "ref", "elapsed"):
            running.add_column(column, justify="right" if column == "elapsed" else "left")
        for job in sorted(status.running, key=lambda j: -j.elapsed_s):
            running.add_row(job.task, job.job_id[:12], job.source, job.ref, duration(job.elapsed_s))
        parts.append(running)
    if any(status.refused.values()):
        parts.append(Text("refused: " + ", ".join(f"{cause} {n}" for cause, n in status.refused.items() if n)))
    if status.failures:
        failures = Table(title="recent failures", title_justify="left")
        for column in ("at", "task", "status", "error"):
            failures.add_column(column, overflow="ellipsis", no_wrap=column != "error")
        for f in reversed(status.failures):
            at = datetime.fromtimestamp(f.ended_at).strftime("%H:%M:%S")
            failures.add_row(at, f.task, Text(f.status, "red"), f.error)
        parts.append(failures)
    components = Table(title="components", title_justify="left")
    for column in ("component", "kind", "state", "details"):
        components.add_column(column)
    for c in status.components:
        components.add_row(f"{c.section}[{c.index}]{f' {c.name}' if c.name else ''}", c.kind, c.state, _details(c.details))
    parts.append(components)
    return Group(*parts)


def _details(details: dict[str, object]) -> str:
    shown = []
    for key, value in details.items():
        if key == "peers" and isinstance(value, list):
            continue  # peer_count says it; top is no place for routing ids
        shown.append(f"{key} {value}")
    return ", ".join(shown)


def print_status(client: Client, timeout_s: float, *, as_json: bool, console: Console | None = None) -> None:
    """``bridgehost status``: fetch once and print. Raises ``StatusError``."""
    status = fetch(client, timeout_s)
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(status), indent=2).decode() + "\n")
        return
    from rich.console import Console

    (console or Console()).print(render(status))


def rates_between(before: HostStatus | None, after: HostStatus, seconds: float) -> dict[str, float]:
    """Jobs per second each task ended between two readings (0 without a
    previous reading or after the host restarted)."""
    if before is None or seconds <= 0 or after.started_at != before.started_at:
        return {}
    previous = {t.name: sum(t.finished.values()) for t in before.tasks}
    return {t.name: max(0, sum(t.finished.values()) - previous.get(t.name, 0)) / seconds for t in after.tasks}


def top(client: Client, *, interval_s: float = POLL_S, timeout_s: float = POLL_S, console: Console | None = None) -> int:
    """``bridgehost top``: redraw ``host.status`` every ``interval_s`` until
    ``q`` (or Ctrl-C). A host that does not answer within ``timeout_s`` is
    shown as such, and polled on. Returns 0."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = console or Console()
    previous: tuple[HostStatus, float] | None = None
    with _keys() as key, Live(console=console, screen=True, auto_refresh=False) as live:
        try:
            while True:
                started = time.monotonic()
                try:
                    status = fetch(client, timeout_s=timeout_s)
                except StatusError as e:
                    view: RenderableType = Text(f"{e}\n(polling again; q quits)", "yellow")
                else:
                    rates = rates_between(previous[0] if previous else None, status, started - previous[1] if previous else 0)
                    previous = (status, started)
                    view = render(status, rates, note=f"{client.endpoint}, every {interval_s:g} s; q quits")
                live.update(view, refresh=True)
                if key(max(0.0, interval_s - (time.monotonic() - started))) in ("q", "Q"):
                    return 0
        except KeyboardInterrupt:
            return 0


@contextlib.contextmanager
def _keys() -> Iterator:
    """``key(timeout_s)``: the key pressed within ``timeout_s`` or None. The
    terminal is in cbreak mode meanwhile (keys arrive unbuffered, Ctrl-C
    still interrupts) and restored after; without a terminal on stdin the
    view only waits."""
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if fd is None:
        yield lambda timeout_s: time.sleep(timeout_s)
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def key(timeout_s: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        yield key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

