"""How many bytes of received DICOM objects are still spooled on disk (for the store quota).

Counted from the receipts (cheaper than walking the spool), minus the files the uplink has
deleted after their report was delivered and the retention period passed (``spool_pruned``,
migration 20), so that pruning frees quota.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import sqlite_utils

from .outbox import utcnow

QUOTA_CLEAR_FRACTION = 0.95  # a reached quota's alarm clears, and refusals end an episode, below this share of it


def spool_bytes(db: sqlite_utils.Database) -> int:
    (n,) = db.execute(
        "SELECT COALESCE(SUM(r.size_bytes), 0) FROM receipts r LEFT JOIN spool_pruned p ON p.receipt_id = r.id "
        "WHERE r.status != 'duplicate' AND p.receipt_id IS NULL").fetchone()
    return n


def usage_bytes(store, db: sqlite_utils.Database) -> int:
    """What counts against ``[store] quota_mb``: the database files (``store``, a Store) plus the spool."""
    return store.size_bytes() + spool_bytes(db)


def record_pruned(tx: sqlite_utils.Database, receipt_id: int, size_bytes: int) -> None:
    """The spooled file of ``receipt_id`` is gone (deleted, or never found)."""
    tx.execute("INSERT OR IGNORE INTO spool_pruned (receipt_id, pruned_at, size_bytes) VALUES (?, ?, ?)",
               [receipt_id, utcnow(), size_bytes])


def unlink_inside(path: Path, roots: Iterable[Path]) -> Optional[bool]:
    """Delete ``path`` if it lies inside one of ``roots`` (resolved folders; never a file elsewhere, even
    through a symlink).  True: deleted; False: already gone; None: not inside them (or unresolvable).
    ``OSError`` if it could not be deleted."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    if not any(root in resolved.parents for root in roots):
        return None
    try:
        os.unlink(resolved)
        return True
    except FileNotFoundError:
        return False
