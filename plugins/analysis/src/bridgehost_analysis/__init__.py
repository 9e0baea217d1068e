"""bridgehost-analysis: the script calculator task and its datastore."""
