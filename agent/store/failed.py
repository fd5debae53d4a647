"""Pruning ``failed/``: rejected objects (no dose in them) are kept for a while, then deleted.

A rejected object is one the agent read and found no dose in: a CT slice or an NM image that a
router forwarded with the study, a non-dose SR.  It is kept in ``failed/`` (an image as its header
only) so that hospital IT can see what is being sent, and deleted ``rejected_retention_days`` after
it arrived: a router forwarding whole studies would otherwise fill the disk, and with a quota set,
make the agent refuse the dose reports too.  Objects that could not be read (``error``: a damaged
or cut dose report) are never pruned: they may be the only copy of a dose; nor are dose reports under a
stored SOP Instance UID with other dose content (``duplicate_differs``: perhaps the corrected doses).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import structlog

from .db import Store
from .spool import record_pruned, unlink_inside

log = structlog.get_logger("agent.store")

PRUNE_BATCH = 500


@dataclass
class PrunedRejected:
    files: int = 0
    bytes: int = 0
    more: bool = False
    resume_after: int = 0  # with ``more``: the receipt id the next call goes on after


def prune_rejected(store: Store, failed_dir: Path, spool_dir: Path, retention_days: float,
                   now: Optional[datetime] = None, max_files: Optional[int] = None,
                   after: int = 0) -> PrunedRejected:
    """Delete the files of rejected receipts received more than ``retention_days`` ago, in batches, and
    record them as pruned: they leave the quota and ``alara-edge studies``.  A file is deleted only in
    ``failed_dir`` or ``spool_dir`` (a rejected object whose move to failed/ failed stays in the spool);
    one found elsewhere, or that cannot be deleted, is left and still counted.  ``retention_days`` 0
    keeps them for ever.  At most about ``max_files`` a call (``more`` says some are left, and the next
    call passes ``after=resume_after``: receipts whose files are left do not hold up those behind them);
    the files are deleted outside the store's transaction, which a crash in between only makes record
    later.  Files that could not be deleted are logged once a call."""
    result = PrunedRejected()
    if retention_days <= 0:
        return result
    max_files = 10 * PRUNE_BATCH if max_files is None else max_files
    before = ((now or datetime.now(timezone.utc)) - timedelta(days=retention_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    roots = [Path(failed_dir).resolve(), Path(spool_dir).resolve()]
    seen, left = 0, _Left()
    while True:
        with store.transaction() as tx:  # (the writer's connection: read under its lock)
            rows = tx.execute(
                "SELECT r.id, r.path, r.size_bytes FROM receipts r LEFT JOIN spool_pruned p ON p.receipt_id = r.id "
                "WHERE r.status = 'rejected' AND r.received_at < ? AND r.id > ? AND p.receipt_id IS NULL "
                "ORDER BY r.id LIMIT ?", [before, after, PRUNE_BATCH]).fetchall()
        gone = []
        for receipt_id, path, size in rows:
            removed = _remove(Path(path), roots, left)
            if removed is not None:
                gone.append((receipt_id, size))
                result.files += removed
                result.bytes += size if removed else 0
        if gone:
            with store.transaction() as tx:
                for receipt_id, size in gone:
                    record_pruned(tx, receipt_id, size)
        seen += len(rows)
        if len(rows) < PRUNE_BATCH:
            break
        after = rows[-1][0]
        if seen >= max_files:
            result.more, result.resume_after = True, after
            break
    if left.files:
        log.warning("rejected_prune_failed", files=left.files, path=left.path, error=left.error,
                    hint="these files stay in failed/ and count against the quota; they are tried again later")
    if result.files:
        log.info("rejected_pruned", files=result.files, bytes=result.bytes, received_before=before,
                 more_to_prune=result.more)
    return result


@dataclass
class _Left:
    """Files that could not be deleted in one call: how many, and the first of them."""
    files: int = 0
    path: Optional[str] = None
    error: Optional[str] = None


def _remove(path: Path, roots: list[Path], left: _Left) -> Optional[bool]:
    """Unlink ``path`` if it lies in one of ``roots``.  True: removed; False: gone already; None: left
    (elsewhere, or it could not be removed)."""
    try:
        return unlink_inside(path, roots)
    except OSError as exc:
        left.files += 1
        if left.path is None:
            left.path, left.error = str(path), exc.strerror or str(exc)
        return None
