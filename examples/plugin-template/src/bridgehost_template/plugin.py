"""The module the ``bridgehost`` entry point names: hook implementations only.

Functions are registered by their import path (a string), so loading the
plugin imports nothing heavy: the analysis is imported by the analysis
child process that runs it, the step by the step runtime.
"""

from bridgehost import hookimpl


@hookimpl
def register_analyses(registry):
    registry.add(
        "template.force_check",
        "bridgehost_template.analyses:force_check",
        summary="peak force of the run's trace against a limit: pass or fail",
    )


@hookimpl
def register_steps(registry):
    registry.add(
        "template.ramp",
        "bridgehost_template.steps:ramp",
        summary="ramp a setpoint in pausable steps, reporting each as a location",
    )
