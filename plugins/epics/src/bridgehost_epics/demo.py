"""``bridgehost demo epics``: the traction analysis run by a put to Trigger.

No IOC needed: the ``pva`` transport serves the standard records itself
(``serve = true``, 127.0.0.1, a free port). The demo writes a traction test
run into a temporary datastore, starts a host with the ``epics`` trigger and
the ``analysis`` task (needs bridgehost-analysis), puts 1 to
``DEMO:Trigger`` as a PV Access client would, waits for the handshake to
end (Trigger back to 0) and prints TaskStatus and TaskDuration.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from p4p.client.asyncio import Context

from bridgehost.host import Host

PREFIX = "DEMO:"
CONFIG = """\
[host]
name = "epics-demo"

[[transports]]
kind = "pva"
serve = true            # the standard records, served on 127.0.0.1 by bridgehost itself

[[triggers]]
kind = "epics"
prefix = "{prefix}"
task = "python.run_analysis"
params = {params}

[[tasks]]
name = "python.run_analysis"
kind = "analysis"
datastore = "./datastore"
timeout_s = 60

[[watchdogs]]
kind = "epics-heartbeat"
prefix = "{prefix}"
"""


def main() -> int:
    """Run the demo; 0 when TaskStatus is Success, 1 otherwise, 2 when
    bridgehost-analysis is missing."""
    try:
        from bridgehost_analysis.traction import SCRIPT, generate_run
    except ImportError:
        print("the epics demo runs the traction analysis: pip install bridgehost-analysis", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bridgehost-epics-demo-") as tmp:
        folder = Path(tmp)
        run = generate_run(folder / "datastore")
        (folder / "epics.toml").write_text(CONFIG.format(prefix=PREFIX, params=_toml_inline(run.request(SCRIPT))))
        host = Host.from_file(folder / "epics.toml")
        print("bridgehost demo: the traction analysis, triggered over PV Access")
        print(f"  run          {run.project_id} / {run.definition_id} / {run.run_id}")
        return asyncio.run(_trigger_once(host))


def _toml_inline(value: object) -> str:
    """A TOML inline table or value for JSON-like data."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_inline(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


async def _trigger_once(host: Host) -> int:
    await host.start()
    try:
        server = host.transports["pva"].server
        print(f"  PVA server   127.0.0.1:{server.port}, records {PREFIX}Trigger, {PREFIX}TaskStatus, ...")
        ctxt = Context("pva", conf=server.client_conf(), useenv=False)
        try:
            status, duration, elapsed = await _handshake(ctxt)
        finally:
            ctxt.close()
    finally:
        await host.stop()
    print(f"  put          {PREFIX}Trigger = 1   (handshake done in {elapsed * 1000:.0f} ms)")
    print(f"  TaskStatus   {int(status)} ({status.choice})")
    print(f"  TaskDuration {float(duration):.3f} s   (the analysis ran in a fresh process)")
    return 0 if int(status) == 0 else 1


async def _handshake(ctxt: Context):
    trigger: asyncio.Queue[Any] = asyncio.Queue()

    async def on_trigger(value):
        trigger.put_nowait(int(value))

    sub = ctxt.monitor(PREFIX + "Trigger", on_trigger)
    try:
        async with asyncio.timeout(90):
            await trigger.get()  # the current value: connected
            started = time.perf_counter()
            await ctxt.put(PREFIX + "Trigger", 1)
            while await trigger.get() != 0:  # bridgehost resets Trigger last
                pass
            elapsed = time.perf_counter() - started
            status, duration = await ctxt.get([PREFIX + "TaskStatus", PREFIX + "TaskDuration"])
    finally:
        sub.close()
    return status, duration, elapsed
