"""What bridgehost-epics shows an observer (the core's ``register_metrics``
hook; docs/observability.md): each ``epics`` trigger's Trigger channel
connection and its refused puts, each ``epics-heartbeat`` watchdog's pulses
and failed puts. The ``pv`` label is the configured Trigger or Heartbeat PV."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgehost_epics.heartbeat import Heartbeat
from bridgehost_epics.trigger import EpicsTrigger

if TYPE_CHECKING:
    from bridgehost.host import Host
    from bridgehost.metrics import Metrics


def declare(metrics: Metrics, host: Host) -> None:
    triggers = [c.impl for c in host.components if isinstance(c.impl, EpicsTrigger)]
    heartbeats = [c.impl for c in host.components if isinstance(c.impl, Heartbeat)]

    def connected(trigger: EpicsTrigger) -> int:
        events = getattr(trigger, "_events", None)  # its Trigger monitor, there once started
        return int(bool(events is not None and events.connected))

    metrics.gauge(
        "bridgehost_epics_trigger_connected",
        "1 while the Trigger PV's monitor is connected to the IOC, else 0, by Trigger PV.",
        labels=("pv",),
        collect=lambda: [((t.pvs.trigger,), connected(t)) for t in triggers],
    )
    metrics.counter(
        "bridgehost_epics_triggers_refused_total",
        "Trigger puts refused (on_busy = \"refuse\" while the task runs), by Trigger PV.",
        labels=("pv",),
        collect=lambda: [((t.pvs.trigger,), t.refused) for t in triggers],
    )
    metrics.counter(
        "bridgehost_epics_heartbeat_pulses_total",
        "Heartbeat PV puts that succeeded, by Heartbeat PV.",
        labels=("pv",),
        collect=lambda: [((h.pv,), h.pulses) for h in heartbeats],
    )
    metrics.gauge(
        "bridgehost_epics_heartbeat_failed_puts",
        "Heartbeat puts failed in a row now (the watchdog exits at max_stuck_cycles), by Heartbeat PV.",
        labels=("pv",),
        collect=lambda: [((h.pv,), h.stuck) for h in heartbeats],
    )
