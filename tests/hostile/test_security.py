"""Who may talk to the host, and what a request may reach (docs/security.md):
CURVE on TCP, owner-only ipc:// socket files, nothing unpickled, ids and
script names that cannot lead out of the datastore."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.auth

from bridgehost_ipc.client import Client, SendQueueFull
from bridgehost_ipc.protocol import decode
from bridgehost_ipc.security import RefusalLog
from harness import request, wait_until

WAIT_S = 15.0
REFUSED_WITHIN_S = 1.5
"""How long a refused client waits before the test takes silence as refusal
(an admitted client answers in milliseconds; a refused one never does)."""


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A host key pair, an authorized client and a stranger, as zmq.auth files."""
    folder, authorized = tmp_path / "keys", tmp_path / "keys" / "authorized"
    authorized.mkdir(parents=True)
    server_public, server_secret = zmq.auth.create_certificates(folder, "server")
    client_public, client_secret = zmq.auth.create_certificates(folder, "client")
    Path(client_public).rename(authorized / "client.key")  # only its public half goes to the host
    stranger_public, stranger_secret = zmq.auth.create_certificates(folder, "stranger")
    return {
        "server_public": Path(server_public),
        "server_secret": Path(server_secret),
        "authorized": authorized,
        "client_secret": Path(client_secret),
        "stranger_secret": Path(stranger_secret),
        "stranger_public": Path(stranger_public),
    }


def curve_extra(keys: dict[str, Path]) -> str:
    return f'curve_secret_key = "{keys["server_secret"]}"\ncurve_authorized_keys = "{keys["authorized"]}"'


def test_curve_admits_an_authorized_key_and_refuses_others_with_a_log_line(start_host, keys) -> None:
    client_keys = {"curve_server_key": keys["server_public"], "curve_client_key": keys["client_secret"]}
    host = start_host(transport_extra=curve_extra(keys), client_kwargs=client_keys)  # waits for host.ping via CURVE
    with host.client() as client:
        assert client.call("hostile.quick", request("good.py"), timeout_s=WAIT_S).data == {"n": 1}

    refused_clients = [
        {"curve_server_key": keys["server_public"], "curve_client_key": keys["stranger_secret"]},  # unknown key
        {},  # no CURVE at all
        {"curve_server_key": keys["stranger_public"], "curve_client_key": keys["client_secret"]},  # wrong host key
    ]
    for options in refused_clients:
        # refused before the send: no connection to queue on; after it: no answer
        with Client(host.endpoint, **options) as refused, pytest.raises((TimeoutError, SendQueueFull)):
            refused.call("host.ping", timeout_s=REFUSED_WITHIN_S)

    stranger_public = zmq.auth.load_certificate(keys["stranger_secret"])[0].decode()
    assert wait_until(lambda: f"refused a client: 127.0.0.1 with public key {stranger_public}" in host.output(), WAIT_S)
    plain_refused = ("refused a client: it does not use CURVE", "refused a client: it broke off the handshake")
    assert wait_until(lambda: any(line in host.output() for line in plain_refused), WAIT_S), host.output()
    assert wait_until(lambda: "uses another host public key" in host.output(), WAIT_S), host.output()
    assert "CURVE on, 1 authorized key(s)" in host.output()


def test_bridgehost_call_speaks_curve(start_host, keys) -> None:
    client_keys = {"curve_server_key": keys["server_public"], "curve_client_key": keys["client_secret"]}
    host = start_host(transport_extra=curve_extra(keys), client_kwargs=client_keys)

    def call(client_key: Path, timeout: str = "15") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bridgehost.cli", "call", "host.ping", "--endpoint", host.endpoint,
             "--curve-server-key", str(keys["server_public"]), "--curve-client-key", str(client_key),
             "--timeout", timeout],
            capture_output=True, text=True, timeout=60,
        )

    admitted = call(keys["client_secret"])
    assert admitted.returncode == 0, admitted.stderr
    refused = call(keys["stranger_secret"], timeout=str(REFUSED_WITHIN_S))
    assert refused.returncode == 1 and host.endpoint in refused.stderr
    unusable = call(keys["server_public"])  # a public key where the secret one belongs
    assert unusable.returncode == 2 and "holds only a public key" in unusable.stderr


def test_refusal_log_is_bounded_per_kind(caplog) -> None:
    refusals = RefusalLog("zmq")
    for _ in range(RefusalLog.BURST + 5):
        refusals.refused("no-curve", "it does not use CURVE")
    refusals.refused("key", "10.0.0.7 with public key abc: Unknown key")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("does not use CURVE" in line for line in lines) == RefusalLog.BURST
    assert any("Unknown key" in line for line in lines)  # another kind is not hidden
    assert refusals.total == RefusalLog.BURST + 6


def test_curve_keys_are_checked_when_the_config_is(tmp_path: Path, keys) -> None:
    """``bridgehost check`` names the key and the file; half a CURVE setup is refused."""
    cases = {
        f'curve_secret_key = "{keys["server_public"]}"\ncurve_authorized_keys = "{keys["authorized"]}"':
            ("transports[0].curve_secret_key", "holds only a public key"),
        f'curve_secret_key = "{keys["server_secret"]}"\ncurve_authorized_keys = "{tmp_path}"':
            ("transports[0].curve_authorized_keys", "holds no public certificate"),
        f'curve_secret_key = "{keys["server_secret"]}"':
            ("transports[0].curve_authorized_keys", "curve_secret_key is set but curve_authorized_keys is not"),
    }
    for i, (extra, (key, words)) in enumerate(cases.items()):
        config = tmp_path / f"c{i}.toml"
        config.write_text(f'[[transports]]\nkind = "zmq"\nendpoint = "tcp://127.0.0.1:5555"\n{extra}\n')
        checked = subprocess.run(
            [sys.executable, "-m", "bridgehost.cli", "check", str(config)], capture_output=True, text=True, timeout=60
        )
        assert checked.returncode != 0
        assert key in checked.stderr and words in checked.stderr, checked.stderr


def test_client_refuses_half_a_curve_setup(keys) -> None:
    with pytest.raises(ValueError, match="both curve_server_key and curve_client_key"):
        Client("tcp://127.0.0.1:5555", curve_server_key=keys["server_public"])
    with pytest.raises(ValueError, match="holds only a public key"):
        Client("tcp://127.0.0.1:5555", curve_server_key=keys["server_public"], curve_client_key=keys["server_public"])


@pytest.mark.parametrize("mode", [None, 0o660])
def test_ipc_socket_file_is_owner_only_by_default(start_host, tmp_path: Path, mode) -> None:
    path = tmp_path / "bh.sock"
    host = start_host(endpoint=f"ipc://{path}", transport_extra="" if mode is None else f"ipc_mode = 0o{mode:o}")
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == (0o600 if mode is None else mode)
    with host.client() as client:
        assert client.call("host.ping", timeout_s=WAIT_S).success


def test_a_pickle_on_the_wire_is_never_unpickled(host, module_dir: Path) -> None:
    """A frame holding a pickle that would create a file when loaded gets a
    'not valid JSON' error, and the file is never created."""
    marker = module_dir / "unpickled"
    payload = pickle.dumps(_Trap(str(marker)))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(host.endpoint)
    try:
        sock.send(payload)
        assert sock.poll(int(WAIT_S * 1000))
        answer = decode(sock.recv_multipart()[-1])
    finally:
        sock.close(linger=0)
    assert not answer.success and "not valid JSON" in answer.error_message
    assert not marker.exists()


class _Trap:
    """Unpickling this calls ``os.mkdir(path)``: proof that something unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_trace_holding_pickled_objects_is_refused_not_loaded(host, module_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    marker = module_dir / "npy-unpickled"
    run = host.store.run("hostile", "pickle", "r1")
    run.save(project={}, configuration={})
    folder = run.path / "traces" / "trace"
    folder.mkdir(parents=True)
    np.save(folder / "force.npy", np.array([_Trap(str(marker))], dtype=object), allow_pickle=True)
    with host.client() as client:
        answer = client.call(
            "hostile.quick", {**request("good.py"), "definition_id": "pickle"}, timeout_s=WAIT_S
        )
    assert not answer.success and answer.data["status"] == "IO_FAILURE"
    assert "force.npy" in answer.error_message and "not a readable .npy" in answer.error_message
    assert not marker.exists()


@pytest.mark.parametrize("field", ["project_id", "definition_id", "run_id"])
@pytest.mark.parametrize("value", ["..", "../../etc", "a/b", "/etc", "", "x" * 200, "r1\x00", ".hidden"])
def test_ids_that_could_lead_out_of_the_datastore_are_refused(host, field: str, value: str) -> None:
    with host.client() as client:
        answer = client.call("hostile.quick", {**request("good.py"), field: value}, timeout_s=WAIT_S)
    assert not answer.success and answer.data["status"] == "REJECTED"
    assert field in answer.error_message and "is not valid" in answer.error_message


@pytest.fixture(scope="module")
def outside(module_dir: Path, host) -> Path:
    """A script outside ``scripts/``, and links in ``scripts/`` that lead to it."""
    folder = module_dir / "outside"
    folder.mkdir()
    (folder / "evil.py").write_text("def calculate_results(ctx):\n    return {'escaped': True}\n")
    scripts = host.store.scripts_dir
    (scripts / "link.py").symlink_to(folder / "evil.py")
    (scripts / "linkdir").symlink_to(folder, target_is_directory=True)
    return folder


@pytest.mark.parametrize(
    "script",
    ["../outside/evil.py", "{outside}/evil.py", "sub/../../outside/evil.py", "link.py", "linkdir/evil.py", "good", "good.py\x00"],
)
def test_script_names_cannot_escape_the_scripts_folder(host, outside: Path, script: str) -> None:
    with host.client() as client:
        answer = client.call("hostile.quick", request(script.format(outside=outside)), timeout_s=WAIT_S)
    assert not answer.success and answer.data["status"] == "REJECTED", answer
    assert "script" in answer.error_message and ("refused" in answer.error_message or "non-empty" in answer.error_message)
    assert "escaped" not in str(answer.data)


@pytest.mark.parametrize("script", ["x" * 300 + ".py", "a/" * 2100 + "x.py"])
def test_a_script_name_too_long_for_the_file_system_is_rejected_not_a_crash(host, script: str) -> None:
    with host.client() as client:
        answer = client.call("hostile.quick", request(script), timeout_s=WAIT_S)
        assert not answer.success and answer.data["status"] == "REJECTED", answer
        assert "cannot be looked up" in answer.error_message and "File name too long" in answer.error_message
        assert "traceback" not in answer.data  # nothing of the host's code is shown
        assert client.call("hostile.quick", request("good.py"), timeout_s=WAIT_S).success


def test_function_must_be_a_plain_name(host) -> None:
    with host.client() as client:
        answer = client.call(
            "hostile.quick", {**request("good.py"), "function": "__import__('os').system"}, timeout_s=WAIT_S
        )
    assert not answer.success and answer.data["status"] == "REJECTED"
    assert "not a Python function name" in answer.error_message
