"""The module the ``bridgehost`` entry point names: hook implementations only.

Loading the plugin imports nothing heavy. The analysis is registered by its
import path (a string): only the analysis child process that runs it
imports it, under the task's limits. The step is imported inside its hook.
Both hooks are added by other plugins (bridgehost-analysis,
bridgehost-steps): ``optionalhook=True`` lets this plugin load where one of
them is not installed; its hookimpl is then never called.
"""

from bridgehost import hookimpl


@hookimpl(optionalhook=True)
def register_analyses(registry):
    registry.add(
        "template.force_check",
        "bridgehost_template.analyses:force_check",
        summary="peak force of the run's trace against a limit: pass or fail",
    )


@hookimpl(optionalhook=True)
def register_steps(registry):
    from bridgehost_template.steps import ramp

    registry.add("template.ramp", ramp, summary="ramp a setpoint in pausable steps, reporting each as a location")
