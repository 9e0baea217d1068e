"""``host.status``, ``bridgehost status`` and ``bridgehost top`` against a
real running host: the commands as subprocesses, ``top`` in a real
terminal (tmux), its screen read with ``capture-pane``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bhprom_support import WAIT_S, host_env, run_cli, wait_until
from bridgehost.status import HostStatus
from bridgehost.testing import free_endpoint


def status_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("status", *args, env={"COLUMNS": "200"})


def test_bridgehost_status_shows_tasks_components_and_the_first_line_of_failures(host):
    assert host.call("rig.copy", {"x": 1}).success
    assert not host.call("rig.interlock").success
    shown = status_cli("--endpoint", host.endpoint)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "observed-rig" in text and "running" in text
    for task in ("rig.copy", "rig.interlock", "rig.hold"):
        assert task in text
    assert "TASK_FAIL" in text and "interlock open: the rig door is open" in text
    assert "second line of detail" not in text
    assert "listening" in text and "peer_count" in text  # the zmq transport, with its peers
    assert "serving" in text and "/metrics" in text  # the prometheus transport


def test_bridgehost_status_json_is_the_host_status(host):
    assert not host.call("rig.interlock").success
    shown = status_cli("--json", "--endpoint", host.endpoint)
    assert shown.returncode == 0, shown.stderr
    status = msgspec.json.decode(shown.stdout, type=HostStatus)
    tasks = {t.name: t for t in status.tasks}
    assert tasks["rig.interlock"].finished["TASK_FAIL"] >= 1
    assert status.failures[-1].error == "interlock open: the rig door is open"
    [zmq] = [c for c in status.components if (c.section, c.kind) == ("transports", "zmq")]
    assert zmq.state == "listening" and zmq.details["peer_count"] >= 1


def test_bridgehost_status_without_a_host_says_so():
    endpoint = free_endpoint()
    shown = status_cli("--endpoint", endpoint, "--timeout", "0.5")
    assert shown.returncode == 1
    assert "no response to 'host.status'" in shown.stderr and endpoint in shown.stderr


class Tmux:
    """A tmux server of this test only (its own socket), ended at the end."""

    def __init__(self, folder: Path):
        self.socket = str(folder / "tmux.sock")

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=WAIT_S)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=WAIT_S)


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux): bridgehost top is not driven in a terminal")
    server = Tmux(tmp_path)
    yield server
    server.kill()


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_bridgehost_top_shows_running_jobs_and_quits_cleanly(host, tmux, tmp_path, quit_key):
    release = tmp_path / "release"
    with host.client() as client:
        tid = client.send("rig.hold", {"release": str(release)})
        exit_file = tmp_path / "exit"
        # COLUMNS and LINES, if this session has them, would override the pane's size for rich
        command = f"env -u COLUMNS -u LINES {sys.executable} -m bridgehost.cli top --endpoint {host.endpoint}; echo $? > {exit_file}"
        env = [arg for key, value in host_env().items() if key == "PYTHONPATH" for arg in ("-e", f"{key}={value}")]
        tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "60", *env, command)
        tmux("resize-window", "-t", "top", "-x", "160", "-y", "60")  # a detached session may start at 80x24
        def running_rows() -> list[str]:
            """The rows of the "running" table of a whole frame, else []."""
            lines = [line.strip() for line in tmux.screen("top").splitlines()]
            if not (lines and lines[0].startswith("observed-rig") and "q quits" in lines[0]) or "running" not in lines:
                return []
            return lines[lines.index("running") + 3 :][:2]

        try:
            wait_until(lambda: any("rig.hold" in row for row in running_rows()), "top shows the running job")
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{tmux.screen('top')}") from None
        screen = tmux.screen("top")
        assert "jobs/s" in screen and "rig.interlock" in screen and "components" in screen
        [row] = [row for row in running_rows() if "rig.hold" in row]
        assert re.search(r"\d+\.\d s", row), row  # its elapsed time
        tmux("send-keys", "-t", "top", quit_key)
        wait_until(exit_file.exists, "top exits")
        release.write_text("go")
        wait_until(lambda: (client.poll(0.05), client.take_response(tid))[1] is not None, "the held job ends")
    assert exit_file.read_text().strip() == "0"
