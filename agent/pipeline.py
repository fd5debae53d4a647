"""The one-way flow of a received object: spool → extraction → store (+ stages) → bus.

A source (the DICOM SCP, ``alara-edge import``) hands :meth:`Pipeline.ingest` the encoded
object.  The object is written to the spool and fsync'd, extracted, and stored in *one*
SQLite transaction together with whatever the registered stages add (the dose checks'
alerts, the outbox rows for the central site).  Only when that transaction has committed
does ``ingest`` return ``stored``, and only then may a source acknowledge the sender.

A stage is any callable ``stage(tx, ingest)``; it runs inside the transaction and may raise
to abort it (the sender then gets a failure and retries).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import sqlite_utils
import structlog

from agent.bus import Bus
from agent.extract import extract_dataset, read_dataset
from agent.extract.record import ExtractionError, Rejected, Report
from agent.store import Store, StoreError
from agent.store.reports import Receipt, SaveResult, record_receipt, save_report
from agent.store.spool import usage_bytes

log = structlog.get_logger("agent.pipeline")


@dataclass
class Ingest:
    """What one stored object brought; stages read it and add to it (``alerts``)."""

    report: Report
    receipt: Receipt
    saved: SaveResult
    station: str
    alerts: list[Any] = field(default_factory=list)


Stage = Callable[[sqlite_utils.Database, Ingest], None]


@dataclass
class Outcome:
    status: str  # stored | duplicate | rejected | error | refused
    reason: Optional[str] = None
    ingest: Optional[Ingest] = None
    path: Optional[str] = None


def utc_iso(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


class Pipeline:
    def __init__(self, store: Store, spool_dir: Path, station: str, bus: Bus | None = None,
                 stages: list[Stage] | None = None):
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.failed_dir = self.spool_dir.parent / "failed"
        self.station = station
        self.bus = bus or Bus()
        self.stages: list[Stage] = list(stages or [])

    # -- the one entry point for every source ------------------------------------------
    def ingest(self, encoded: bytes, origin: str, *, calling_ae: str | None = None,
               called_ae: str | None = None, peer: str | None = None, name_hint: str | None = None) -> Outcome:
        """Spool, extract, store. ``encoded`` is a complete DICOM file (preamble + meta + dataset)."""
        received = time.time()
        if self.store.quota_bytes is not None and self._used_bytes() + len(encoded) > self.store.quota_bytes:
            log.error("store_quota_reached", quota_bytes=self.store.quota_bytes, origin=origin, calling_ae=calling_ae)
            self.bus.publish("alarm", {"kind": "store_quota_reached"})
            return Outcome("refused", "store quota reached")
        digest = hashlib.sha256(encoded).hexdigest()
        try:
            path = self._spool(encoded, received, digest)
        except OSError as exc:
            log.error("spool_write_failed", error=exc.strerror or str(exc), origin=origin)
            return Outcome("refused", f"cannot write spool: {exc.strerror or exc}")

        receipt = Receipt(received_at=utc_iso(received), origin=origin, path=str(path), sha256=digest,
                          size_bytes=len(encoded), calling_ae=calling_ae, called_ae=called_ae, peer=peer)
        try:
            ds = read_dataset(encoded)
            receipt.sop_instance_uid = _str(ds, "SOPInstanceUID")
            receipt.sop_class_uid = _str(ds, "SOPClassUID")
            receipt.transfer_syntax = _str(ds.file_meta, "TransferSyntaxUID") if hasattr(ds, "file_meta") else None
            report = extract_dataset(ds)
        except Rejected as exc:
            return self._keep_failed(receipt, "rejected", str(exc), name_hint)
        except Exception as exc:  # any parse failure is kept for inspection; the source goes on
            reason = str(exc) if isinstance(exc, ExtractionError) else f"{type(exc).__name__}: {exc}"
            return self._keep_failed(receipt, "error", reason, name_hint)

        try:
            with self.store.transaction() as tx:
                saved = save_report(tx, report, receipt, self.station)
                ingest = Ingest(report=report, receipt=receipt, saved=saved, station=self.station)
                if not saved.duplicate:
                    for stage in self.stages:
                        stage(tx, ingest)
        except StoreError as exc:
            log.error("store_write_failed", error=str(exc), origin=origin, calling_ae=calling_ae)
            _unlink_quietly(path)
            return Outcome("refused", f"store: {exc}")

        status = "duplicate" if saved.duplicate else "stored"
        if saved.duplicate:
            _unlink_quietly(path)  # the first copy is the record
        log.info("report_" + status, origin=origin, calling_ae=calling_ae, sop_instance_uid=report.sop_instance_uid,
                 kind=report.kind, modality=report.modality, source=report.source, events=len(report.events),
                 new_events=len(saved.new_event_uids), alerts=len(ingest.alerts), warnings=len(report.warnings),
                 ms=round((time.time() - received) * 1000, 1))
        if not saved.duplicate:
            self.bus.publish("report", ingest)
            for alert in ingest.alerts:
                self.bus.publish("alert", alert)
            self.bus.publish("outbox", None)
        return Outcome(status, ingest=ingest, path=str(path))

    # -- helpers -------------------------------------------------------------------------
    def _used_bytes(self) -> int:
        with self.store.transaction() as tx:
            return usage_bytes(self.store, tx)

    def _spool(self, encoded: bytes, received: float, digest: str) -> Path:
        day = time.strftime("%Y/%m/%d", time.gmtime(received))
        folder = self.spool_dir / day
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%H%M%S', time.gmtime(received))}-{digest[:16]}.dcm"
        _write_durably(path, encoded)
        return path

    def _keep_failed(self, receipt: Receipt, status: str, reason: str, name_hint: str | None) -> Outcome:
        src = Path(receipt.path)
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        dest = self.failed_dir / src.name
        try:
            os.replace(src, dest)
            _fsync_dir(self.failed_dir)
            receipt.path = str(dest)
        except OSError:
            pass  # it stays in the spool; the receipt says where
        try:
            with self.store.transaction() as tx:
                record_receipt(tx, receipt, status, reason)
        except StoreError as exc:
            log.error("store_write_failed", error=str(exc), origin=receipt.origin)
            return Outcome("refused", f"store: {exc}")
        log.warning("report_" + status, origin=receipt.origin, calling_ae=receipt.calling_ae, reason=reason,
                    sop_class_uid=receipt.sop_class_uid, kept_at=receipt.path, file=name_hint)
        self.bus.publish("receipt_failed", {"status": status, "reason": reason, "path": receipt.path})
        return Outcome(status, reason=reason, path=receipt.path)


def _str(ds: Any, keyword: str) -> Optional[str]:
    value = getattr(ds, keyword, None)
    return str(value) if value not in (None, "") else None


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
