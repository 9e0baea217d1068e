"""``bridgehost demo traction``: AutoCore's analysis workflow end to end, with no set-up.

It does what the AutoCore control program and autocore-python do together
(AutoCore's manual, "Python Analysis Integration"): write a traction test run into a
datastore (in a temporary folder), start a host with the ``zmq`` transport
and trigger and the ``analysis`` task on a free loopback port, send
``python.run_analysis`` over a real ZeroMQ DEALER socket, and print the
results ``analyze_traction.py`` computed in its own process.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bridgehost.host import Host
from bridgehost_analysis.traction import SCRIPT, generate_run

TASK = "python.run_analysis"
CONFIG = f"""\
[host]
name = "traction-demo"

[[transports]]
kind = "zmq"
endpoint = "tcp://127.0.0.1:*"   # a free loopback port, picked by the OS

[[triggers]]
kind = "zmq"

[[tasks]]
name = "{TASK}"
kind = "analysis"
datastore = "./datastore"
timeout_s = 60
"""


def traction() -> int:
    """Run the demo; returns 0 when the analysis succeeded, 1 when it did
    not, 2 when bridgehost-ipc is not installed."""
    try:
        from bridgehost_ipc.client import Client  # noqa: F401 - checked before any work
    except ImportError:
        print("the traction demo talks ZeroMQ: pip install bridgehost-ipc", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bridgehost-demo-") as tmp:
        folder = Path(tmp)
        run = generate_run(folder / "datastore")
        (folder / "traction.toml").write_text(CONFIG)
        host = Host.from_file(folder / "traction.toml")
        print("bridgehost demo: traction analysis over ZeroMQ")
        print(f"  datastore  {run.store.root}")
        samples = len(run.raw_trace("trace", as_lists=False)["force"])
        print(f"  run        {run.project_id} / {run.definition_id} / {run.run_id}"
              f" ({samples} force samples, {len(run.cycle_history())} cycles)")
        return asyncio.run(_serve_one(host, run.request(SCRIPT)))


async def _serve_one(host: Host, data: dict) -> int:
    await host.start()
    try:
        endpoint = host.transports["zmq"].endpoint
        print(f"  host       {host.name!r} listening on {endpoint}")
        # The client runs in a thread as a control program would: its own
        # socket, blocking call, while the host serves on this loop.
        response, elapsed = await asyncio.to_thread(_call, endpoint, data)
    finally:
        await host.stop()
    print(f"  request    {TASK}  transaction_id={response.transaction_id}  script={data['script']}")
    if not response.success:
        print(f"  response   FAILED ({response.data.get('status')}): {response.error_message}")
        return 1
    print(f"  response   success in {elapsed * 1000:.0f} ms (a fresh process ran the script)")
    for key, value in response.data.items():
        print(f"    {key:<10} {value!r}")
    return 0


def _call(endpoint: str, data: dict):
    from bridgehost_ipc.client import Client

    with Client(endpoint) as client:
        started = time.perf_counter()
        response = client.call(TASK, data, timeout_s=90)
        return response, time.perf_counter() - started
