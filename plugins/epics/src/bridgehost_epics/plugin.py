"""The bridgehost plugin: the ``pva`` transport, the ``epics`` trigger, the
``epics-heartbeat`` watchdog and the ``epics`` demo.

Each hook imports its component, so loading the plugin (``bridgehost
--help``) does not import p4p."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bridgehost import hookimpl

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.registry import Registry


@hookimpl
def register_transports(registry: Registry) -> None:
    from bridgehost_epics.transport import PvaTransport, PvaTransportConfig

    registry.add("pva", PvaTransport, config=PvaTransportConfig,
                 summary="PV Access client settings; serve = true serves the standard records itself")


@hookimpl
def register_triggers(registry: Registry) -> None:
    from bridgehost_epics.trigger import EpicsTrigger, EpicsTriggerConfig

    registry.add("epics", EpicsTrigger, config=EpicsTriggerConfig,
                 summary="each put of 1 to <prefix>Trigger runs a task; TaskStatus, TaskDuration, Busy")


@hookimpl
def register_watchdogs(registry: Registry) -> None:
    from bridgehost_epics.heartbeat import Heartbeat, HeartbeatConfig

    registry.add("epics-heartbeat", Heartbeat, config=HeartbeatConfig,
                 summary="toggles <prefix>Heartbeat while the loop advances; exits 1 when stuck")


@hookimpl
def register_demos(registry: Registry) -> None:
    registry.add("epics", _epics_demo, summary="the traction analysis run by a Trigger put on the embedded PVA server")


def _epics_demo() -> int:
    from bridgehost_epics.demo import main  # only when asked

    return main()


@hookimpl
def register_metrics(metrics, host) -> None:
    from bridgehost_epics.metrics import declare  # imports p4p: only for a host being observed

    declare(metrics, host)


@hookimpl
def host_started(host: Host) -> None:
    trigger = sys.modules.get("bridgehost_epics.trigger")
    if trigger is None:  # no epics trigger was built, and p4p stays unimported
        return
    for component in host.components:  # a Trigger left at 1 before start-up waits for this
        if isinstance(component.impl, trigger.EpicsTrigger):
            component.impl.host_started()
