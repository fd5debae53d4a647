"""Durable state: SQLite via sqlite-utils (see :mod:`agent.store.db`)."""
from .db import QuotaExceeded, Store, StoreBusy, StoreError, connect, first_unwritable

__all__ = ["Store", "StoreError", "QuotaExceeded", "StoreBusy", "connect", "first_unwritable"]
