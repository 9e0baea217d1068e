"""The hook bridgehost-steps adds, so any bridgehost plugin can publish steps.

Implement it in an ordinary bridgehost plugin (entry-point group
``bridgehost``); mark it ``optionalhook=True`` if bridgehost-steps may not
be installed beside your plugin::

    from bridgehost import hookimpl

    @hookimpl(optionalhook=True)
    def register_steps(registry):
        registry.add("centrifuge", centrifuge, data=Spin, summary="spin at data.rpm")

A config's sequence then names the step ``"centrifuge"``. bridgehost-steps
adds this module's hookspec in its ``add_hookspecs`` (as pytest's
``pytest_addhooks``), so the host core need not know about steps; the host
fills the catalog (``STEPS``) while it loads plugins.
"""

from __future__ import annotations

from bridgehost.registry import CatalogSpec, PluginCatalog
from bridgehost_steps.steps import StepDef, named_step

STEPS = CatalogSpec("step", make=named_step)
"""The catalog ``register_steps`` fills: ``host.plugins.catalog(STEPS)``."""


@STEPS.hookspec
def register_steps(registry: PluginCatalog[StepDef]) -> None:
    """Publish steps by name: ``registry.add(name, process, *, data=None,
    point=None, summary="")``. ``process`` is an async callable taking
    ``(data, context)`` or ``(context)``; ``data`` and ``point`` are the
    types its JSON data and points are converted to (msgspec). Raises
    ``ValueError`` (the plugin fails to load) for a name another plugin
    published or that contains ':', ``TypeError`` for a process that takes
    neither form."""
