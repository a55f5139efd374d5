"""`atom replay`: audit, rebuild, re-score and evaluate from an event log, with no server."""

from .cli import main

__all__ = ["main"]
