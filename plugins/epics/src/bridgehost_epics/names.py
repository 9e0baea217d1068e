"""PV names: the standard records under a prefix, and PV interfaces made of
prefix templates such as ``{main}Pos:RBV``.

The standard names are epics-bridge's (epics-bridge 2.1.0, "The standard
db", https://pypi.org/project/epics-bridge/), plus ``TriggerCount``, ``Refused`` and the log PVs of
``bridgehost.db``. Templates use ``str.format`` fields, as epics-bridge's
``BasePVInterface`` does: a template naming a prefix key that is not defined
is an error naming the key, raised when the component is built, so
``bridgehost check`` reports it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from bridgehost.errors import InvalidField

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""The states of the LogLevel mbbo, in order (index = state number)."""

STEP_STATES = ("idle", "running", "pausing", "paused", "faulted", "halting", "completed", "skipped", "halted", "failed")
"""The states of the State mbbi, in order (index = state number): ``idle``
(no step job has run yet), then ``bridgehost_steps.machine.State``'s values
(docs/steps.md, the state machine)."""


def db_path() -> Path:
    """The path of the shipped ``bridgehost.db`` (load it with ``P=<prefix>``)."""
    return Path(str(files("bridgehost_epics") / "db" / "bridgehost.db"))


@dataclass(frozen=True)
class StandardPVs:
    """The names of the standard records under ``prefix`` (e.g. ``"RIG:01:"``)."""

    prefix: str

    def __getattr__(self, record: str) -> str:
        # Only the record names below; anything else is a typo worth an error.
        if record in RECORDS:
            return self.prefix + RECORDS[record]
        raise AttributeError(f"no standard record {record!r} (records: {', '.join(RECORDS)})")

    def log_pv(self, level: str) -> str:
        """The log waveform of a level name (``"INFO"`` -> ``<prefix>InfoLog``)."""
        return f"{self.prefix}{level.capitalize()}Log"


RECORDS = {
    "trigger": "Trigger",
    "trigger_count": "TriggerCount",
    # processed once, when the IOC starts: its timestamp tells a restart from a network break
    "boot": "Boot",
    "busy": "Busy",
    "heartbeat": "Heartbeat",
    "task_status": "TaskStatus",
    # A "Raw Soft Channel" mbbi (bridgehost.db) undoes a put to VAL when the
    # record processes; a put to RVAL sets the state.
    "task_status_raw": "TaskStatus.RVAL",
    # A Soft Channel mbbi (no DTYP, as in epics-bridge's README) takes VAL
    # and ignores RVAL: the trigger reads DTYP to know which to write.
    "task_status_dtyp": "TaskStatus.DTYP",
    "task_duration": "TaskDuration",
    "refused": "Refused",
    "log_level": "LogLevel",
    "silenced_loggers": "SilencedLoggers",
    # step control (bridgehost_epics.steps)
    "pause": "Pause",
    "pause_count": "PauseCount",
    "resume": "Resume",
    "resume_count": "ResumeCount",
    "halt": "Halt",
    "halt_count": "HaltCount",
    "state": "State",
    "location": "Location",
    "control_answer": "ControlAnswer",
}


def template_keys(template: str) -> list[str]:
    """The prefix keys a template uses (``"{main}Pos"`` -> ``["main"]``).
    Raises ValueError for a malformed template (an unclosed brace)."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


class PVInterface(Mapping[str, str]):
    """A PV interface: names mapped to templates, resolved against prefixes.

    ``PVInterface({"position_rbv": "{main}Pos:RBV"}, {"main": "IOC:M1:"})``
    maps ``"position_rbv"`` to ``"IOC:M1:Pos:RBV"``; attribute access works
    too (``interface.position_rbv``). Raises ``InvalidField`` (field
    ``pvs.<name>``) when a template names an undefined prefix key or does not
    parse, listing the keys that are defined.
    """

    def __init__(self, templates: Mapping[str, str], prefixes: Mapping[str, str]):
        resolved: dict[str, str] = {}
        for name, template in templates.items():
            try:
                keys = template_keys(template)
            except ValueError as e:
                raise InvalidField(f"pvs.{name}", f"template {template!r} does not parse: {e}",
                                   "write prefix keys as {key} and a literal brace as {{ or }}") from None
            for key in keys:
                if key not in prefixes:
                    defined = ", ".join(sorted(prefixes)) or "none"
                    raise InvalidField(
                        f"pvs.{name}",
                        f"template {template!r} uses prefix key {key!r}, which is not defined (defined: {defined})",
                        f"add {key} = \"...\" to the prefixes table, or fix the template",
                    )
            resolved[name] = template.format_map(prefixes)
        self._names = resolved

    def __getitem__(self, name: str) -> str:
        return self._names[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getattr__(self, name: str) -> str:
        try:
            return self._names[name]
        except KeyError:
            raise AttributeError(f"no PV named {name!r} in this interface (names: {', '.join(self._names)})") from None

    def __repr__(self) -> str:
        return f"PVInterface({self._names!r})"
