"""bridgehost-epics: EPICS PV Access for bridgehost (p4p).

The ``epics`` trigger (a put to ``<prefix>Trigger`` runs a task; TaskStatus,
TaskDuration, Busy report it), the ``epics-heartbeat`` watchdog, the ``pva``
transport with an optional embedded server, and ``bridgehost_epics.io`` for
tasks. Records: ``names.db_path()``. Reference: ``docs/epics.md``.
"""

__version__ = "0.1.0"
