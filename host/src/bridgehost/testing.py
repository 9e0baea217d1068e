"""The core's pytest plugin for plugin authors, shipped with bridgehost.

Installed with ``bridgehost`` (entry point ``pytest11``), so its fixture is
there in any test session of an environment that has bridgehost:

``bridgehost_host``
    ``bridgehost_host(config_toml)`` builds a host from TOML text with every
    installed plugin (yours through its entry point) and starts it on a loop
    of its own thread; returns a ``RunningHost`` (``.call(task, params)``,
    ``.host``). Stopped at the end of the test.

In the config text, ``{endpoint}`` becomes a free loopback TCP endpoint,
``{datastore}`` the folder ``tmp_path / "datastore"`` and ``{tmp_path}`` the
test's folder; the file is written to ``tmp_path / "host.toml"``, so relative
paths resolve against ``tmp_path``. Other braces are left alone (TOML inline
tables stay valid).

Fixtures of a plugin's own kinds come with its distribution (its ``pytest11``
entry point), as datasette ships ``datasette/_pytest_plugin.py``.
Reference: ``docs/writing-plugins.md``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.jobs import Outcome

START_TIMEOUT_S = 60.0
"""Bound on a host's start and stop in the fixtures (a hang, not a measure)."""


def free_endpoint() -> str:
    """``tcp://127.0.0.1:PORT`` with a port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class RunningHost:
    """A started ``Host`` on an event loop in a thread of its own.

    ``host`` is the ``bridgehost.host.Host``; ``config_path`` the file its
    config was written to. Call ``call()`` from the test's thread.
    """

    def __init__(self, host: Host, config_path: Path):
        self.host = host
        self.config_path = config_path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bridgehost-test-host", daemon=True)
        self._thread.start()
        try:
            self._run(host.start())
        except BaseException:
            self._close()
            raise

    def _run(self, coro: Any, timeout_s: float = START_TIMEOUT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def call(self, task: str, params: Mapping[str, Any] | None = None, *, timeout_s: float = 60.0) -> Outcome:
        """Submit a request for ``task`` and wait for its ``Outcome`` (the
        task's own ``timeout_s`` applies inside; ``timeout_s`` here only
        bounds the wait, raising ``TimeoutError``). Its ``data`` is decoded
        (``Outcome.decoded_data()``) if the task passed encoded JSON on."""
        from bridgehost.jobs import Request

        async def submit() -> Outcome:
            return await self.host.submit(Request(task=task, params=dict(params or {}), source="pytest"))

        outcome: Outcome = self._run(submit(), timeout_s)
        return msgspec.structs.replace(outcome, data=outcome.decoded_data())

    def stop(self) -> None:
        """Stop the host (jobs still running are cancelled) and its loop."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.host.stop(grace_s=0))
        finally:
            self._close()

    def _close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self._loop.close()


def build_host(
    config: str,
    tmp_path: Path,
    *,
    plugins: Sequence[object] = (),
    load: list[str] | None = None,
    strict: bool = True,
) -> tuple[Host, Path]:
    """The ``Host`` for config text (placeholders as in the module doc),
    with the installed plugins (``load`` restricts them, as ``[plugins]
    load`` does) plus ``plugins`` (modules or objects with hookimpls).

    With ``strict``, raises ``RuntimeError`` with the traceback if an
    installed plugin failed to load: in a plugin's own tests that is the
    failure to see. Raises ``bridgehost.errors.ConfigError`` for a bad config.
    """
    from bridgehost.config import parse_config
    from bridgehost.host import Host
    from bridgehost.plugins import load_plugins

    text = config
    if "{endpoint}" in text:
        text = text.replace("{endpoint}", free_endpoint())
    text = text.replace("{datastore}", str(tmp_path / "datastore")).replace("{tmp_path}", str(tmp_path))
    path = tmp_path / "host.toml"
    path.write_text(text)
    loaded = load_plugins(load=load, extra=[(f"test-plugin-{i}", p) for i, p in enumerate(plugins)])
    if strict and loaded.failures:
        details = "\n".join(f"plugin {f.plugin!r} ({f.distribution}):\n{f.traceback}" for f in loaded.failures.values())
        raise RuntimeError(f"installed plugins failed to load:\n{details}")
    return Host(parse_config(tomllib.loads(text), loaded, source=str(path)), loaded), path


@pytest.fixture
def bridgehost_host(tmp_path: Path) -> Iterator[Callable[..., RunningHost]]:
    """``bridgehost_host(config, *, plugins=(), load=None, strict=True) -> RunningHost``
    (see ``build_host``); every host started is stopped after the test."""
    started: list[RunningHost] = []

    def start(
        config: str, *, plugins: Sequence[object] = (), load: list[str] | None = None, strict: bool = True
    ) -> RunningHost:
        host, path = build_host(config, tmp_path, plugins=plugins, load=load, strict=strict)
        running = RunningHost(host, path)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()
