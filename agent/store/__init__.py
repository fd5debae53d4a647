"""Durable state: SQLite via sqlite-utils (see :mod:`agent.store.db`)."""
from .db import QuotaExceeded, Store, StoreBusy, StoreError, connect

__all__ = ["Store", "StoreError", "QuotaExceeded", "StoreBusy", "connect"]
