"""Bounded disk: how much the store and spool hold, and pruning what was delivered long ago.

Only delivered data is ever deleted: outbox rows ``retention_days`` after their PUBACK, and the
spooled DICOM file of a report whose outbox row was delivered that long ago.  Unsent data is
never dropped to make room; when the quota is reached the pipeline refuses new objects (0xA700)
and the uplink keeps the alarm up until usage falls below :data:`~agent.store.spool.QUOTA_CLEAR_FRACTION` of the quota.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import structlog

from agent.store import Store, outbox
from agent.store.spool import record_pruned, unlink_inside

log = structlog.get_logger("agent.uplink")

PRUNE_BATCH = 500
CLOCK_STEP_S = 300.0  # the wall clock moved this much more than the monotonic clock: it was set (NTP)


class ClockWatch:
    """Notices the wall clock being set forward while the agent runs (a box without a real-time
    clock starts at its last shutdown time or in 1970 and NTP corrects it later).

    Rows delivered under the wrong clock carry delivery times far in the past; without correcting
    them, pruning would delete data delivered minutes ago (and its spooled DICOM file) at once.
    """

    def __init__(self) -> None:
        self._last_wall, self._last_mono = time.time(), time.monotonic()
        self.since = self._last_wall  # this run's start, on the clock its delivery times were written with

    def correct(self, store: Store) -> int:
        """If the wall clock moved :data:`CLOCK_STEP_S` more than the monotonic one since the last call,
        move the delivery times this run wrote under the old clock forward by the step, so that
        ``retention_days`` counts from the real delivery; returns the rows.  If the store refuses
        (StoreError), the step is noticed again at the next call."""
        wall, mono = time.time(), time.monotonic()
        elapsed = mono - self._last_mono
        step, old_latest = (wall - self._last_wall) - elapsed, self._last_wall + elapsed
        rows = 0
        if step >= CLOCK_STEP_S:
            with store.transaction() as tx:
                rows = tx.execute(
                    "UPDATE outbox SET delivered_at = strftime('%Y-%m-%dT%H:%M:%SZ', delivered_at, ?) "
                    "WHERE state = 'delivered' AND delivered_at >= ? AND delivered_at <= ?",
                    [f"+{int(step)} seconds", _iso(self.since), _iso(old_latest + 1)]).rowcount
            log.warning("clock_stepped", step_s=round(step), delivered_rows_corrected=rows)
            self.since += step
        self._last_wall, self._last_mono = wall, mono
        return rows


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class Pruned:
    rows: int = 0
    files: int = 0
    bytes: int = 0


def cutoff(retention_days: float, now: Optional[datetime] = None) -> str:
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=retention_days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def prune(store: Store, spool_dir: Path, retention_days: float, now: Optional[datetime] = None) -> Pruned:
    """Delete delivered outbox rows and the spooled files of delivered reports older than the retention."""
    before = cutoff(retention_days, now)
    spool_root = Path(spool_dir).resolve()
    result = Pruned()
    with store.transaction() as tx:
        files = tx.execute(
            "SELECT r.id, r.path, r.size_bytes FROM outbox o "
            "JOIN reports rep ON rep.sop_instance_uid = json_extract(o.body, '$.sop_instance_uid') "
            "JOIN receipts r ON r.id = rep.receipt_id "
            "LEFT JOIN spool_pruned p ON p.receipt_id = r.id "
            "WHERE o.kind = 'report' AND o.state = 'delivered' AND o.delivered_at < ? AND p.receipt_id IS NULL "
            "LIMIT ?", [before, PRUNE_BATCH]).fetchall()
        for receipt_id, path, size in files:
            removed = _remove_spooled(Path(path), spool_root)
            if removed is None:
                continue  # could not delete: stays counted, tried again next time
            if removed:
                result.files += 1
                result.bytes += size
            record_pruned(tx, receipt_id, size)
        if len(files) < PRUNE_BATCH:  # rows go only once their files are gone
            result.rows = outbox.prune_delivered(tx, before)
    if result.rows or result.files:
        log.info("outbox_pruned", rows=result.rows, files=result.files, bytes=result.bytes, delivered_before=before)
    return result


def _remove_spooled(path: Path, spool_root: Path) -> Optional[bool]:
    """Unlink ``path`` if it lies inside the spool (never anything else).

    True: removed; False: already gone or not in the spool; None: could not be removed.
    """
    try:
        removed = unlink_inside(path, [spool_root])
    except OSError as exc:
        log.warning("spool_prune_failed", path=str(path), error=exc.strerror)
        return None
    return bool(removed)
