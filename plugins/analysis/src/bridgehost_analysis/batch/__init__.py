"""Re-analyse a datastore: every selected run through one analysis, with
the isolation of an online run, on this machine's cores or a Dask cluster.

``reanalyze(Options(...)) -> Summary`` is the API; ``bridgehost
reanalyze`` its command. Reference: ``docs/analysis.md`` ("Re-analyse a
datastore"), ``docs/datastore.md`` ("Provenance"), ``docs/scale-out.md``.
"""

from typing import TYPE_CHECKING

from bridgehost.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs see
    from bridgehost_analysis.batch.core import BadBatch, Batch, Options, Summary, reanalyze
    from bridgehost_analysis.batch.provenance import Provenance, Record
    from bridgehost_analysis.batch.selection import RunKey, read_run_list, scan

# Resolved on first use (PEP 562): the command's parser (bridgehost --help)
# imports this package without the batch's runtime.
_EXPORTS = {
    "BadBatch": "bridgehost_analysis.batch.core",
    "Batch": "bridgehost_analysis.batch.core",
    "Options": "bridgehost_analysis.batch.core",
    "Summary": "bridgehost_analysis.batch.core",
    "reanalyze": "bridgehost_analysis.batch.core",
    "Provenance": "bridgehost_analysis.batch.provenance",
    "Record": "bridgehost_analysis.batch.provenance",
    "RunKey": "bridgehost_analysis.batch.selection",
    "read_run_list": "bridgehost_analysis.batch.selection",
    "scan": "bridgehost_analysis.batch.selection",
}
__all__ = [
    "BadBatch",
    "Batch",
    "Options",
    "Provenance",
    "Record",
    "RunKey",
    "Summary",
    "read_run_list",
    "reanalyze",
    "scan",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
