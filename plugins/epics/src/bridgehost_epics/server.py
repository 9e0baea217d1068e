"""The standard records served by bridgehost itself (``serve = true``).

For a site without an IOC, the demo and the tests: p4p's PV Access server
with one ``SharedPV`` per record of ``bridgehost.db``, behaving as the IOC's
records do for what bridgehost relies on. A put of 1 to ``Trigger`` counts
in ``TriggerCount`` (and to ``Pause``, ``Resume``, ``Halt`` in their own
counts); a put to ``TaskStatus.RVAL`` sets the ``TaskStatus`` state, whose
``DTYP`` reads ``Raw Soft Channel`` as in ``bridgehost.db``; ``Boot`` is
stamped when the server starts and refuses puts; every other PV holds what
was last put.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from p4p.nt import NTEnum, NTScalar
from p4p.server import Server, StaticProvider
from p4p.server.thread import SharedPV

from bridgehost_epics.names import LOG_LEVELS, STEP_STATES, StandardPVs

TASK_STATES = ("Success", "Task Fail", "IO Failure", "Code Crash", "Skipped", "Timeout", "Cancelled", "Busy", "Rejected")
"""TaskStatus states, as ``bridgehost.db`` and ``bridgehost.jobs.Status`` number them."""


class _Store:
    """Put handler: accept the value and post it (with ``then`` called after)."""

    def __init__(self, then=None):
        self.then = then

    def put(self, pv: SharedPV, op: Any) -> None:
        value = op.value()
        pv.post(value.raw if hasattr(value, "raw") else value, timestamp=time.time())
        if self.then is not None:
            self.then(value)
        op.done()


def _enum(choices: Iterable[str], index: int = 0, handler: Any = None) -> SharedPV:
    return SharedPV(nt=NTEnum(), initial={"index": index, "choices": list(choices)}, handler=handler or _Store())


def _scalar(code: str, initial: Any, handler: Any = None) -> SharedPV:
    return SharedPV(nt=NTScalar(code), initial=initial, handler=handler or _Store())


def _counted_bo(on: str) -> tuple[SharedPV, SharedPV]:
    """A bo whose puts of 1 count in a calc on its FLNK: (bo, count)."""
    lock = threading.Lock()
    count = _scalar("d", 0.0)
    counted = [0]

    def on_put(value: Any) -> None:
        if int(value) == 1:
            with lock:  # a put of 1 processes the record, whose FLNK counts it
                counted[0] += 1
                count.post(float(counted[0]), timestamp=time.time())

    return _enum(("Idle", on), handler=_Store(on_put)), count


class _Refuse:
    """Put handler of a record whose puts are refused (``DISP`` = 1)."""

    def put(self, pv: SharedPV, op: Any) -> None:
        op.done(error="puts to this record are disabled (DISP = 1)")


def standard_records(prefix: str) -> dict[str, SharedPV]:
    """The SharedPVs of ``bridgehost.db`` under ``prefix``, by PV name."""
    pvs = StandardPVs(prefix)
    status = _enum(TASK_STATES)

    def on_raw(value: Any) -> None:
        status.post(int(value), timestamp=time.time())

    records = {
        pvs.busy: _enum(("Idle", "Busy")),
        pvs.heartbeat: _enum(("Low", "High")),
        pvs.task_status: status,
        pvs.task_status_raw: _scalar("I", 0, handler=_Store(on_raw)),
        pvs.task_status_dtyp: _enum(("Soft Channel", "Raw Soft Channel", "Async Soft Channel"), index=1),
        pvs.task_duration: _scalar("d", 0.0),
        pvs.refused: _scalar("i", 0),
        pvs.boot: SharedPV(nt=NTScalar("i"), handler=_Refuse()),
        pvs.log_level: _enum(LOG_LEVELS, index=1),
        pvs.silenced_loggers: _scalar("as", []),
    }
    records[pvs.boot].open(0, timestamp=time.time())  # stamped once, as the IOC's PINI does
    for level in LOG_LEVELS:
        records[pvs.log_pv(level)] = _scalar("ab", [])
    for bo, on in (("trigger", "Run"), ("pause", "Pause"), ("resume", "Resume"), ("halt", "Halt")):
        records[getattr(pvs, bo)], records[getattr(pvs, bo + "_count")] = _counted_bo(on)
    records[pvs.state] = _enum(STEP_STATES)
    records[pvs.location] = _scalar("ab", [])
    records[pvs.control_answer] = _scalar("ab", [])
    return records


class EmbeddedServer:
    """A PV Access server on loopback serving the standard records of
    ``prefixes``. ``port`` 0 picks a free TCP port; ``self.port`` is the one
    in use once started."""

    def __init__(self, prefixes: Iterable[str], port: int = 0):
        self.prefixes = sorted(set(prefixes))
        self.port = port
        self.records: dict[str, SharedPV] = {}
        self._server: Server | None = None

    def start(self) -> None:
        provider = StaticProvider("bridgehost")
        for prefix in self.prefixes:
            for name, pv in standard_records(prefix).items():
                provider.add(name, pv)
                self.records[name] = pv
        self._provider = provider  # the server holds no reference of its own
        self._server = Server(
            providers=[provider],
            useenv=False,
            conf={
                "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
                "EPICS_PVAS_SERVER_PORT": str(self.port),
                "EPICS_PVAS_BROADCAST_PORT": "0",
                "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
                "EPICS_PVAS_BEACON_ADDR_LIST": "",
            },
        )
        self.port = int(self._server.conf()["EPICS_PVAS_SERVER_PORT"])

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client_conf(self) -> dict[str, str]:
        """Client settings that reach this server (and nothing else)."""
        return {
            "EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{self.port}",
            "EPICS_PVA_ADDR_LIST": "",
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        }
