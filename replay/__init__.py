"""`atom replay`: verify, export and import an event log without a running server."""
