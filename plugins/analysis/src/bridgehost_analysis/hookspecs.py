"""The hook bridgehost-analysis adds, so any bridgehost plugin can publish
analyses by name for the ``analysis`` task to run.

Implement it in an ordinary bridgehost plugin (entry-point group
``bridgehost``); mark it ``optionalhook=True`` if bridgehost-analysis may
not be installed beside your plugin::

    from bridgehost import hookimpl

    @hookimpl(optionalhook=True)
    def register_analyses(registry):
        registry.add("acme.peak_force", "acme_bridgehost.analyses:peak_force", summary="...")

bridgehost-analysis adds this module's hookspec in its ``add_hookspecs``;
the host fills the catalog (``ANALYSES``) while it loads plugins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridgehost.registry import CatalogSpec, PluginCatalog

TARGET_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
"""What an analysis's target must be: ``"package.module:function"`` (the
function may be a dotted path inside the module, ``"mod:Class.method"``)."""
_TARGET = re.compile(TARGET_PATTERN)


@dataclass(frozen=True)
class NamedAnalysis:
    """An analysis a plugin published: ``target`` is the
    ``"package.module:function"`` only the analysis child imports."""

    name: str
    target: str
    summary: str = ""


def named_analysis(name: str, target: object, *, summary: str = "") -> NamedAnalysis:
    """The ``NamedAnalysis`` for ``registry.add(name, target, summary=...)``.

    Raises ``ValueError`` unless ``target`` is a ``"package.module:function"``
    string (``TARGET_PATTERN``): the host never imports analysis code itself.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(
            f"analysis {name!r} must be registered as a 'package.module:function' string, "
            f"got {target!r}: it is imported only where it runs"
        )
    return NamedAnalysis(name, target, summary)


ANALYSES = CatalogSpec("analysis", make=named_analysis)
"""The catalog ``register_analyses`` fills: ``host.plugins.catalog(ANALYSES)``."""


@ANALYSES.hookspec
def register_analyses(registry: PluginCatalog[NamedAnalysis]) -> None:
    """Register named analysis functions, which the ``analysis`` task runs
    exactly as it runs a datastore script: in a fresh child process, under
    the task's limits, with the same ``ctx`` (``docs/analysis.md``).

    Call ``registry.add("traction.max_force", "package.module:function",
    summary="...")``. The target is a string so the host never imports the
    analysis code itself: only the child process does, after its resource
    limits are set. ``function(ctx) -> dict``. A request names it with
    ``"analysis": "traction.max_force"``, a task config with
    ``analysis = "traction.max_force"``. Names are dotted, the first part
    the publishing plugin's (``traction.``), so plugins do not collide.
    Raises ``ValueError`` (the plugin fails to load) for a target that is not
    such a string or a name another plugin published.
    """
