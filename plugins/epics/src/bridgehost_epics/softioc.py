"""A soft IOC in a child process, for tests, benchmarks and trials.

``SoftIoc(prefix, dbs)`` runs ``python -m pvxslibs.ioc -m P=<prefix> -d <db>...``
(pvxslibs, the ``ioc`` extra of bridgehost-epics) serving PV Access on
127.0.0.1 only, on a free TCP port and a free UDP search port of its own, so
several run side by side; the Channel Access server is not started
(``EPICS_IOC_IGNORE_SERVERS=rsrv``). Its standard input is held open: the
IOC shell exits at end of input. ``client_env`` is the environment a PVA
client needs to find it and nothing else.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from p4p.client.thread import Context


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 now (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SoftIoc:
    """A ``pvxslibs.ioc`` process; ``start()`` returns once ``probe_pv`` answers."""

    def __init__(self, prefix: str, dbs: list[Path], log: Path, *, probe: str = "Busy"):
        self.prefix = prefix
        self.dbs = dbs
        self.log = log
        self.probe_pv = prefix + probe
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def client_env(self) -> dict[str, str]:
        """``EPICS_PVA_*`` settings of a client that finds this IOC and nothing else."""
        return {
            "EPICS_PVA_ADDR_LIST": "127.0.0.1",
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_BROADCAST_PORT": str(self.udp_port),
            "EPICS_PVA_SERVER_PORT": str(self.port),
        }

    def start(self, timeout_s: float = 30.0, *, direct: bool = False) -> None:
        """Start (or restart, on the same ports). Raises RuntimeError with
        the IOC's output if it exits or does not answer within ``timeout_s``.
        ``direct``: probe over TCP to its port (``direct_client``), not by a
        UDP search, which a stopped process holding the search port (a client
        sharing it, stopped with SIGSTOP) can swallow."""
        env = dict(os.environ)
        env.update(
            EPICS_PVAS_SERVER_PORT=str(self.port),
            EPICS_PVAS_BROADCAST_PORT=str(self.udp_port),
            EPICS_PVAS_INTF_ADDR_LIST="127.0.0.1",
            EPICS_PVAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_PVAS_BEACON_ADDR_LIST="127.0.0.1",
            EPICS_IOC_IGNORE_SERVERS="rsrv",
        )
        args = [sys.executable, "-m", "pvxslibs.ioc", "-m", f"P={self.prefix}"]
        for db in self.dbs:
            args += ["-d", str(db)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        with self.direct_client() if direct else self.client() as ctxt:
            while True:
                try:
                    ctxt.get(self.probe_pv, timeout=1.0)
                    return
                except TimeoutError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError(f"the IOC did not answer {self.probe_pv}; its output:\n"
                                           f"{self.log.read_text()}") from None

    def channels(self, timeout_s: float = 30.0) -> set[str]:
        """The names of the channels PV Access clients have open on this IOC
        now (from the IOC's own server report, ``pvxsr 5``; a monitor, a
        get's channel that p4p keeps open, ``TaskStatus.RVAL`` as such)."""
        assert self.proc is not None and self.proc.stdin is not None
        mark = f"channels-{time.monotonic_ns()}"
        start, end = f"<{mark}>", f"</{mark}>"
        # the IOC's shell is Python's: ioc() runs an iocsh command (epicscorelibs.ioc)
        self.proc.stdin.write(f'print("{start}"); ioc("pvxsr 5"); print("{end}")\n'.encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while end not in (text := self.log.read_text(errors="replace")).split(start)[-1]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no server report from the IOC; its output:\n{text}")
            time.sleep(0.02)
        report = text.split(start)[-1].split(end)[0]
        # a channel line: "[peer]   <name> TX=<n> RX=<n> ..." (peer lines say "backlog=")
        return {name for name in re.findall(r"(\S+) TX=\d+ RX=\d+", report) if name.startswith(self.prefix)}

    def client(self) -> Context:
        """A new blocking p4p client context that finds this IOC."""
        return Context("pva", conf=self.client_env, useenv=False)

    def direct_client(self) -> Context:
        """A new blocking p4p client context that reaches this IOC over TCP
        only (``EPICS_PVA_NAME_SERVERS``: no UDP search)."""
        conf = {"EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{self.port}", "EPICS_PVA_ADDR_LIST": "",
                "EPICS_PVA_AUTO_ADDR_LIST": "NO"}
        return Context("pva", conf=conf, useenv=False)

    def kill(self) -> None:
        """Kill the IOC process (SIGKILL, by PID) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
