"""`pip install ./host ./plugins/ipc ./plugins/analysis` works without uv:
declared dependencies, entry points and package data (AutoCore's traction script)
are enough for the demo to run from anywhere."""

import os
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_pip_install_of_the_three_distributions_runs_the_demo(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    install = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         ROOT / "host", ROOT / "plugins" / "ipc", ROOT / "plugins" / "analysis"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plugins = subprocess.run(
        [bin_dir / "bridgehost", "plugins"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60
    )
    assert plugins.returncode == 0, plugins.stderr
    assert "FAILED" not in plugins.stdout
    for line in ("transport: zmq", "task: analysis", "demo: traction", "task: callable"):
        assert line in plugins.stdout
    demo = subprocess.run(
        [bin_dir / "bridgehost", "demo"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "max_force" in demo.stdout and "avg_force" in demo.stdout
    assert str(ROOT) not in demo.stdout  # it ran from the installed copies, not the checkout
