"""An example bridgehost plugin: the analysis ``template.force_check`` and
the step ``template.ramp``, published through ``bridgehost_template.plugin``."""

__version__ = "0.1.0"
