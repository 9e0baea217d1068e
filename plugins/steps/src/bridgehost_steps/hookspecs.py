"""The hook bridgehost-steps adds, so any bridgehost plugin can publish steps.

Implement it in an ordinary bridgehost plugin (entry-point group
``bridgehost``)::

    from bridgehost import hookimpl

    @hookimpl
    def register_steps(registry):
        registry.add("centrifuge", centrifuge, data=Spin, summary="spin at data.rpm")

A config's sequence then names the step ``"centrifuge"``. The spec is added
to the host's plugin manager when the first ``step`` or ``sequence`` task is
built (as pytest's ``pytest_addhooks`` does), so the host core need not know
about steps.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from bridgehost.hookspecs import hookspec

from bridgehost_steps.steps import PluginStepRegistry, StepRegistry

if TYPE_CHECKING:
    from bridgehost.plugins import Plugins

log = logging.getLogger("bridgehost.steps")


@hookspec
def register_steps(registry: PluginStepRegistry) -> None:
    """Publish steps by name: ``registry.add(name, process, *, data=None,
    point=None, summary="")``. ``process`` is an async callable taking
    ``(data, context)`` or ``(context)``; ``data`` and ``point`` are the
    types its JSON data and points are converted to (msgspec). A name used
    twice is an error naming both plugins."""


def collect_steps(plugins: Plugins) -> StepRegistry:
    """Add this module's spec to the plugin manager (once) and call every
    plugin's ``register_steps``, each on its own: one that raises is logged
    and provides nothing, the others still register."""
    pm = plugins.pm
    caller = getattr(pm.hook, "register_steps", None)
    if caller is None or caller.spec is None:
        pm.add_hookspecs(sys.modules[__name__])
        caller = pm.hook.register_steps
    registry = StepRegistry()
    for impl in reversed(caller.get_hookimpls()):
        try:
            impl.function(registry=PluginStepRegistry(registry, impl.plugin_name))
        except Exception:
            log.exception("plugin %r raised in register_steps; its steps are not available", impl.plugin_name)
            for name in [n for n, owner in registry.owners.items() if owner == impl.plugin_name]:
                del registry.steps[name], registry.owners[name]
    return registry
