"""Re-analyse a datastore: every selected run through one analysis, with
the isolation of an online run, on this machine's cores or a Dask cluster.

``reanalyze(Options(...)) -> Summary`` is the API; ``bridgehost
reanalyze`` its command. Reference: ``docs/analysis.md`` ("Re-analyse a
datastore"), ``docs/datastore.md`` ("Provenance"), ``docs/scale-out.md``.
"""

from bridgehost_analysis.batch.core import BadBatch, Batch, Options, Summary, reanalyze
from bridgehost_analysis.batch.provenance import Provenance, Record
from bridgehost_analysis.batch.selection import RunKey, read_run_list, scan

__all__ = ["BadBatch", "Batch", "Options", "Provenance", "Record", "RunKey", "Summary", "read_run_list", "reanalyze", "scan"]
