"""examples/plugin-template, installed with pip into a fresh environment
beside the workspace's host, ipc, analysis and steps (no uv, no checkout on the
path): it passes its own tests, which use bridgehost's pytest plugin; the
plugin, registered only through its entry point, appears in `bridgehost
plugins` and its analysis serves a request through `bridgehost run`."""

import json
import os
import shutil
import signal
import subprocess
import venv
from pathlib import Path

import pytest

from bridgehost_analysis.datastore import Datastore
from bridgehost_ipc.client import Client

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "examples" / "plugin-template"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with host, ipc, analysis, steps and the template (with its test
    extra) installed by pip from a copy of the template."""
    root = tmp_path_factory.mktemp("template")
    source = root / "plugin-template"
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("BRIDGEHOST")}
    install = subprocess.run(
        [env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         ROOT / "host", ROOT / "plugins" / "ipc", ROOT / "plugins" / "analysis",
         ROOT / "plugins" / "steps", f"{source}[test]"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return env_dir / "bin", source, env


def test_the_template_passes_its_own_tests(installed):
    bin_dir, source, env = installed
    result = subprocess.run(
        [bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider", "-rs"],
        capture_output=True, text=True, env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=source, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    # All of them run, the step tests included: nothing is skipped.
    assert "8 passed" in summary and "skipped" not in summary, result.stdout[-3000:]


def test_the_entry_point_plugin_is_listed_and_serves_a_request(installed, tmp_path, start_host):
    bin_dir, _, env = installed
    listing = subprocess.run([bin_dir / "bridgehost", "plugins", "--json"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=60)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["template"]["distribution"] == "bridgehost-plugin-template"
    assert plugins["template"]["kinds"] == {"analysis": ["template.force_check"], "step": ["template.ramp"]}
    assert plugins["template"]["error"] is None

    run = Datastore(tmp_path / "datastore").run("acme", "traction", "r1")
    run.save(configuration={"control_load": 200.0})
    run.set_raw_trace(t=[0.0, 0.1, 0.2], force=[10.0, 250.0, 90.0])
    config = """
[[transports]]
kind = "zmq"
endpoint = "{endpoint}"

[[triggers]]
kind = "zmq"

[[tasks]]
name = "rig.force_check"
kind = "analysis"
datastore = "{datastore}"
analysis = "template.force_check"
"""
    check_config = tmp_path / "check.toml"
    check_config.write_text(config.format(endpoint="tcp://127.0.0.1:5555", datastore=run.store.root))
    check = subprocess.run([bin_dir / "bridgehost", "check", check_config], capture_output=True, text=True, env=env, timeout=60)
    assert check.returncode == 0, check.stderr
    # Left out, the plugin is named from the metadata its pyproject.toml declares (bridgehost.provides).
    disabled = subprocess.run([bin_dir / "bridgehost", "check", check_config], capture_output=True, text=True,
                              env={**env, "BRIDGEHOST_DISABLE_PLUGINS": "template"}, timeout=60)
    assert disabled.returncode == 2, disabled.stderr
    assert ("bridgehost-plugin-template is installed but its plugin 'template' is disabled by "
            "BRIDGEHOST_DISABLE_PLUGINS: remove 'template' from it") in disabled.stderr
    host = start_host(config, run.store.root, bridgehost=[bin_dir / "bridgehost"], env=env)
    with Client(host.endpoint) as client:
        response = client.call("rig.force_check", run.ids, timeout_s=60)
    assert response.success, response.error_message
    assert response.data == {"peak_force": 250.0, "peak_time_s": 0.1, "limit": 240.0, "passed": False}
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=30) == 0
