"""bridgehost-analysis' pytest plugin (entry point ``pytest11``), as
datasette ships ``datasette/_pytest_plugin.py``: its fixtures exist in any
test session of an environment that has bridgehost-analysis and pytest.

``bridgehost_datastore``
    A ``bridgehost_analysis.datastore.Datastore`` at ``tmp_path /
    "datastore"`` (the folder ``{datastore}`` names in a
    ``bridgehost_host`` config), with ``scripts/`` and ``results/``.
``bridgehost_run``
    ``bridgehost_run(project=..., configuration=..., results=..., cycles=[...],
    traces={"trace": {"t": [...], "force": [...]}})`` writes the run you
    describe into that datastore and returns its ``Run``
    (``run.ids``, ``run.request(script)``).

The core's fixtures (``bridgehost_host``) are ``bridgehost.testing``'s.
Reference: ``docs/writing-plugins.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bridgehost_analysis.datastore import Datastore, Run


@pytest.fixture
def bridgehost_datastore(tmp_path: Path) -> Datastore:
    """A ``Datastore`` at ``tmp_path / "datastore"``, its folders made."""
    from bridgehost_analysis.datastore import Datastore  # numpy: only when used, not in every pytest session

    store = Datastore(tmp_path / "datastore")
    store.scripts_dir.mkdir(parents=True, exist_ok=True)
    store.results_dir.mkdir(parents=True, exist_ok=True)
    return store


@pytest.fixture
def bridgehost_run(bridgehost_datastore: Datastore) -> Callable[..., Run]:
    """``bridgehost_run(**description) -> Run``: write a run into ``bridgehost_datastore``.

    Keywords: ``project_id``, ``definition_id``, ``run_id`` (defaults
    ``"project"``, ``"definition"``, ``"run-1"``); ``project``,
    ``configuration``, ``results`` (dicts, as ``project.json`` ...);
    ``cycles`` (a list of dicts, the cycle history); ``traces``
    (``{trace_name: {channel: 1-D numbers}}``, e.g. ``{"trace": {"t": t,
    "force": f}}``). Raises what the datastore raises for bad ids or data
    (``InvalidId``, ``NotJSONError``, ``ValueError``).
    """

    def make(
        *,
        project_id: str = "project",
        definition_id: str = "definition",
        run_id: str = "run-1",
        project: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        results: Mapping[str, Any] | None = None,
        cycles: Sequence[Mapping[str, Any]] = (),
        traces: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Run:
        run = bridgehost_datastore.run(project_id, definition_id, run_id)
        run.save(project=project or {}, configuration=configuration or {}, results=results or {})
        if cycles:
            run.set_cycle_history(cycles)
        for name, channels in (traces or {}).items():
            run.set_raw_trace(name, **channels)
        return run

    return make
