"""The one-way flow of a received object: inbox → spool → extraction → store (+ stages) → bus.

A source hands the encoded object to the pipeline in one of two ways:

- :meth:`Pipeline.receive` (the DICOM SCP) makes the object durable as one row of the
  :mod:`inbox <agent.store.inbox>` and returns ``accepted``; the source may then answer the
  sender.  The pipeline's worker thread takes the inbox in order and processes each object
  (below), removing its row only once the result has committed.  ``receive`` returns once no
  other object waits behind the one being processed (back-pressure: a fast sender cannot make
  alerts lag), unless the worker is retrying a failed store; what an earlier run left in
  the inbox is processed at start-up.  :meth:`Pipeline.wait_processed` lets a source wait for
  the objects it handed over (the SCP does before it confirms an association's release).
- :meth:`Pipeline.ingest` (``alara-edge import``, tests) processes the object at once and
  returns the result.

Processing writes the object to the spool (flushed before its inbox row is removed, for a burst's
objects together; at once for ``ingest``), extracts it, and stores it in *one*
SQLite transaction together with whatever the registered stages add (the dose checks'
alerts, the outbox rows for the central site).  A stage is any callable ``stage(tx, ingest)``;
it runs inside the transaction and may raise to abort it.  A processed object is
``stored``, ``duplicate``, ``duplicate_differs`` (a stored SOP Instance UID with other dose content: kept
for inspection, the stored report stays the record), ``rejected`` (not a dose object: kept for inspection) or ``error``
(a dose object that cannot be read, or whose processing fails: kept for inspection, and the
others go on); if the spool or the store cannot take it (disk full, I/O error: ``refused``),
the worker keeps its inbox row and tries again later.  An object while reading, extracting or
checking which the agent died :data:`MAX_ATTEMPTS` times (killed, crashed, hung until the
watchdog ended it) is set aside when it is next taken, as an ``error`` kept for inspection, so that
what came after it is processed (kept like any object that cannot be read).
"""
from __future__ import annotations

import collections
import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import sqlite_utils
import structlog

from agent import phi
from agent.bus import Bus
from agent.extract import extract_dataset, read_dataset
from agent.extract.reader import pixel_data_offset
from agent.extract.common import hstr
from agent.extract.record import ExtractionError, Rejected, Report
from agent.logs import Repeats
from agent.store import Store, StoreError
from agent.store.db import is_corrupt
from agent.store.inbox import MAX_ATTEMPTS, Inbox, Item, path_for as inbox_path
from agent.store.reports import DIFFERS, Receipt, SaveResult, record_receipt, save_report, study_records
from agent.store.spool import QUOTA_CLEAR_FRACTION, spool_bytes

log = structlog.get_logger("agent.pipeline")


@dataclass
class Ingest:
    """What one stored object brought; stages read it and add to it (``alerts``)."""

    report: Report
    receipt: Receipt
    saved: SaveResult
    station: str
    alerts: list[Any] = field(default_factory=list)
    _study: Optional[list[dict[str, Any]]] = field(default=None, repr=False)

    def study_records(self, tx: sqlite_utils.Database) -> list[dict[str, Any]]:
        """The records of this report's study that are not superseded, this one's among them, oldest first
        ([] without a Study Instance UID): read once, for the checks and the study's totals in the outbox
        (no stage changes reports).  Treat them as read-only."""
        if self._study is None:
            uid = self.report.study_instance_uid
            self._study = study_records(tx, uid) if uid else []
        return self._study


Stage = Callable[[sqlite_utils.Database, Ingest], None]

REMOVE_BATCH = 32  # processed inbox rows removed together while objects keep coming (at once when none waits)
REMOVE_BATCH_BYTES = 4 << 20  # ... or once they hold this many bytes
MAX_WAITING = 0  # accepted objects that may wait behind the one being processed before receive() returns
BACKPRESSURE_MAX_S = 10.0  # receive() never holds a sender longer than this
MIN_FREE_BYTES = 1 << 20  # below this free on the inbox's or the spool's disk, C-ECHO says the agent cannot store
PROCESSING_STALLED = "processing_stalled"  # the alarm while accepted objects cannot be stored
FINISH_S = 30.0  # on stop, the object in hand gets this long to finish
WORKER_STALL_S = 120.0  # one object held longer than this: the worker is stuck (a hung disk), the agent unhealthy


@dataclass
class Outcome:
    status: str  # accepted (in the inbox) | stored | duplicate | duplicate_differs | rejected | error | refused
    # | too_large (receive(): larger than an inbox row can be, never accepted)
    reason: Optional[str] = None
    ingest: Optional[Ingest] = None
    path: Optional[str] = None
    item_id: Optional[int] = None  # the inbox row of an accepted object


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
        self.inbox: Inbox | None = None  # opened by start(), closed by stop()
        self._queue: collections.deque[Item] = collections.deque()  # accepted, not yet processed, in order
        self._recovered: set[int] = set()  # inbox rows found at start: an earlier run may have stored them
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._failing = False  # the object in hand was refused; the worker is waiting to try again
        self._spool_used: int | None = None  # quota check: the spool's last exact count plus what was spooled since
        self._busy_since: float | None = None  # monotonic time the worker took the object in hand
        self._flushing_since: float | None = None  # ... or began flushing a batch's spool files (_remove_processed)
        self._processed: list[int] = []  # inbox rows processed and committed, not yet removed (_remove_processed)
        self._processed_bytes = 0
        self._unflushed: list[str] = []  # their spool files, flushed before the rows go
        self._quota_refusals = 0  # objects refused since the quota was last found with room
        self._repeats = Repeats()  # objects received again: logged once a minute each, with a count

    # -- the entry points ---------------------------------------------------------------
    def receive(self, encoded: bytes, origin: str, *, calling_ae: str | None = None,
                called_ae: str | None = None, peer: str | None = None,
                received_size: int | None = None) -> Outcome:
        """Make ``encoded`` durable in the inbox and queue it for the worker: ``accepted`` or ``refused``.
        ``received_size``: the object's size as received, when ``encoded`` is it without its pixel data."""
        received = time.time()
        if self._worker is None:
            raise RuntimeError("Pipeline.receive() before Pipeline.start()")
        most = self.inbox.max_object_bytes()
        if len(encoded) > most:  # it would be refused as often as it is sent
            log.error("object_too_large", size_bytes=len(encoded), max_bytes=most,
                      origin=origin, calling_ae=calling_ae,
                      hint="refused for good: too large to be kept whole, and its pixel data could not be cut "
                           "off (none found, or a deflated transfer syntax); have the sender leave it out")
            return Outcome("too_large", f"{len(encoded):,} bytes: too large to be kept")
        refused = self._over_quota(len(encoded), origin, calling_ae)
        if refused:
            return refused
        try:
            item = self.inbox.put(encoded, received, origin, calling_ae, called_ae, peer, received_size)
        except (sqlite3.Error, MemoryError) as exc:  # disk full, read-only, a huge object on a small box:
            # nothing was kept, the sender must retry (SQLite's "out of memory" is a MemoryError)
            error = str(exc) if isinstance(exc, sqlite3.Error) else f"out of memory for {len(encoded)} bytes"
            log.error("inbox_write_failed", error=error, origin=origin, calling_ae=calling_ae)
            return Outcome("refused", f"inbox: {error}")
        with self._cv:
            self._queue.append(item)
            self._cv.notify_all()
            # Back-pressure: answer once no other object waits behind the one in hand, so that a
            # sender faster than the checks cannot make alerts lag (an object is durable already;
            # a worker retrying a failed store does not hold senders up). Receiving the next
            # object still overlaps with processing this one.
            self._cv.wait_for(lambda: len(self._queue) <= 1 + MAX_WAITING or self._failing or self._stopping,
                              timeout=BACKPRESSURE_MAX_S)
        return Outcome("accepted", item_id=item.id)

    def ingest(self, encoded: bytes, origin: str, *, calling_ae: str | None = None,
               called_ae: str | None = None, peer: str | None = None) -> Outcome:
        """Spool, extract, store at once. ``encoded`` is a complete DICOM file (preamble + meta + dataset)."""
        received = time.time()
        refused = self._over_quota(len(encoded), origin, calling_ae)
        if refused:
            return refused
        return self._process(encoded, received, origin, calling_ae=calling_ae, called_ae=called_ae, peer=peer)

    # -- the worker ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker; it first processes what an earlier run left in the inbox."""
        if self._worker is not None:
            return
        self.inbox = Inbox(inbox_path(self.store.path))  # beside the store, whose writer lock covers it
        left = self.inbox.pending()
        if left:
            log.info("inbox_recovered", objects=len(left))
        with self._cv:
            self._stopping = self._failing = False
            self._recovered = {item.id for item in left}
            self._queue.extendleft(reversed(left))
        self._worker = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._worker.start()

    def stop(self, grace_s: float = 30.0) -> None:
        """Process what was received (for up to ``grace_s``), then stop; the rest stays in the inbox."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
            self._cv.wait_for(lambda: not self._queue or self._failing, timeout=grace_s)
            left = len(self._queue) - (1 if self._queue and self._busy_since is not None else 0)  # not the one in hand
            self._queue.clear()  # the worker finishes the object in hand and ends
            self._cv.notify_all()
        worker.join(timeout=FINISH_S)
        if worker.is_alive():  # stuck (a disk that does not answer): its row stays in the inbox for the next start
            log.error("pipeline_worker_stuck", busy_s=round(self.busy_for(), 1))
            return
        self.inbox.close()
        self.inbox = None
        if left:
            log.warning("inbox_left_for_next_start", objects=left)

    def wait_processed(self, item_id: int, timeout: float) -> bool:
        """Wait until inbox row ``item_id`` has been processed (or the worker stopped); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._worker is None or all(i.id != item_id for i in self._queue),
                                     timeout=timeout)

    def pending(self) -> int:
        with self._cv:
            return len(self._queue)

    @property
    def running(self) -> bool:
        """The worker is alive (False before start() and after stop())."""
        return self._worker is not None and self._worker.is_alive()

    def busy_for(self) -> float:
        """Seconds the worker has held the object in hand, or been flushing the spool files of those it
        processed (0 when idle): an fsync on a disk that no longer answers hangs either."""
        since = self._busy_since if self._busy_since is not None else self._flushing_since
        return 0.0 if since is None else time.monotonic() - since

    def stuck(self) -> bool:
        """The worker has held one object longer than :data:`WORKER_STALL_S`, e.g. in an fsync on a
        disk that no longer answers (it may hold the store's writer lock meanwhile)."""
        return self.busy_for() > WORKER_STALL_S

    def _run(self) -> None:
        backoff = 1.0
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    break
                item = self._queue[0]
            self._busy_since = time.monotonic()
            try:
                outcome = self._process_item(item)
            finally:
                self._busy_since = None
            if outcome.status == "refused":  # the spool or the store cannot take it now: keep it, try again
                if not self._failing:  # the modality was told Success: a person must hear of it elsewhere
                    log.error("processing_stalled", reason=outcome.reason, waiting=self.pending(),
                              hint="accepted objects wait in the inbox and are tried again; " + (
                                  "the store's file is damaged: a restart moves it aside" if self.store.damaged
                                  else "free disk space"))
                    self.bus.publish("alarm", {"kind": PROCESSING_STALLED, "reason": outcome.reason,
                                               "waiting": self.pending()})
                self._remove_processed()  # about to wait too, maybe long: what went before is done
                with self._cv:
                    self._failing = True
                    self._cv.notify_all()
                    if self._cv.wait_for(lambda: not self._queue, timeout=backoff):
                        break  # stopping: the row stays in the inbox
                backoff = min(backoff * 2, 60.0)
                continue
            if self._failing:  # processing goes on again
                self.bus.publish("alarm", {"kind": PROCESSING_STALLED, "cleared": True})
                log.info("processing_resumed", waiting=self.pending())
            backoff = 1.0
            with self._cv:  # processed and committed: senders and releases waiting for it may go on
                self._failing = False
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                self._recovered.discard(item.id)
                self._cv.notify_all()
                busy = bool(self._queue)
            self._processed.append(item.id)
            self._processed_bytes += item.size
            # (one set aside that could not be moved to failed/ stays in the spool, unflushed as well)
            if outcome.path and Path(outcome.path).is_relative_to(self.spool_dir):
                self._unflushed.append(outcome.path)
            if not busy or len(self._processed) >= REMOVE_BATCH or self._processed_bytes >= REMOVE_BATCH_BYTES:
                self._remove_processed()
            # the object is in the spool or failed/ now: the worker, idle until the next one, held it (a 400 MB
            # image: 400 MB for as long, on top of the next object's receiving)
            item.data = None
        self._remove_processed()

    def _remove_processed(self) -> None:
        """Flush the spool files of the objects processed since the last removal, then remove their inbox
        rows: at once when the worker is about to wait, else a batch at a time while objects keep coming (a
        removal is a write of the inbox's log, which the C-STORE being received waits for; the batch's files
        go to disk with one journal commit, not one each).  Until then the inbox holds each object's bytes,
        and a start after a crash writes a spool file that did not reach the disk again (_restore_spool)."""
        if not self._processed:
            return
        self._flushing_since = time.monotonic()  # (not _busy_since: no object is in hand, stop() counts by it)
        try:
            _flush(self._unflushed)
            self.inbox.remove(self._processed)
        except OSError as exc:  # the rows stay: the next start finds the objects processed and restores the files
            log.error("spool_flush_failed", error=exc.strerror or str(exc))
        except sqlite3.Error as exc:  # at the next start the rows are recognised as processed
            log.error("inbox_remove_failed", error=str(exc))
        finally:
            self._flushing_since = None
        self._processed, self._processed_bytes, self._unflushed = [], 0, []

    def _process_item(self, item: Item) -> Outcome:
        try:
            data = self.inbox.load(item)
        except sqlite3.Error as exc:  # the inbox cannot be read now: keep the row, try again
            return Outcome("refused", f"inbox: {exc}")
        digest = hashlib.sha256(data).hexdigest()
        if item.id in self._recovered and self._already_processed(digest, item.received_at):
            problem = self._restore_spool(data, digest, item.received_at)
            if problem:  # the row may be the object's only copy now: keep it, try again
                return Outcome("refused", problem)
            return Outcome("duplicate", reason="processed before the restart")
        try:
            return self._process(data, item.received_at, item.origin, calling_ae=item.calling_ae,
                                 called_ae=item.called_ae, peer=item.peer, digest=digest, item=item,
                                 received_size=item.received_size)
        except Exception as exc:  # never let one object stop the worker; it stays in the inbox
            log.exception("processing_failed", error=f"{type(exc).__name__}: {exc}", origin=item.origin)
            return Outcome("refused", str(exc))

    def _already_processed(self, digest: str, received: float) -> bool:
        try:
            with self.store.transaction() as tx:
                return tx.execute("SELECT 1 FROM receipts WHERE sha256 = ? AND received_at = ?",
                                  [digest, utc_iso(received)]).fetchone() is not None
        except StoreError:
            return False

    def _restore_spool(self, data: bytes, digest: str, received: float) -> str | None:
        """The spool file of an object processed before a crash, written again if it did not reach the disk
        (the worker flushes spool files in batches, before it removes their inbox rows).  Returns why it
        could not be (None: the files are there), for the inbox row to stay until it can."""
        try:
            with self.store.transaction() as tx:
                # not a file deleted since on purpose (retention after delivery, rejected objects' pruning)
                rows = tx.execute("SELECT r.path, r.status FROM receipts r LEFT JOIN spool_pruned p ON "
                                  "p.receipt_id = r.id WHERE r.sha256 = ? AND r.received_at = ? AND "
                                  "p.receipt_id IS NULL", [digest, utc_iso(received)]).fetchall()
        except StoreError as exc:
            return f"store: {exc}"
        for path, status in rows:
            path = Path(path)
            # a duplicate's file must be there only if it was kept (the first copy's name); any other in the spool
            # (stored, or set aside but not moved to failed/: failed/ files are flushed before they move) must
            if not path.is_relative_to(self.spool_dir) or (status == "duplicate" and not path.exists()):
                continue
            try:
                if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                    # read from the cache: after a kill (not a power cut) it may still not be on the disk
                    _flush([str(path)])
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_durably(path, data)
                log.warning("spool_file_restored", path=str(path), status=status)
            except OSError as exc:
                log.error("spool_write_failed", error=exc.strerror or str(exc), origin="inbox")
                return f"cannot write spool: {exc.strerror or exc}"
        return None

    def can_accept(self) -> bool:
        """Whether an object sent now would be taken (C-ECHO answers by it): the worker is not held
        up by a refused object, the store's quota leaves room, and the disks of the inbox and the
        spool have :data:`MIN_FREE_BYTES` left.  Side-effect free: nothing is logged or raised."""
        if self._failing:
            return False
        for folder in (Path(self.store.path).parent, self.spool_dir):
            try:
                st = os.statvfs(folder if folder.exists() else folder.parent)
            except OSError:
                return False
            if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
                return False
        try:
            return self._fits(1)
        except StoreError:
            return False

    # -- processing ------------------------------------------------------------------------
    def _fits(self, size: int) -> bool:
        """Whether ``size`` more bytes stay within the store's quota (always, without one): the store's
        files, the spool estimate and what was accepted but is not spooled yet; the spool is counted
        exactly before the answer is no (pruning may have freed room)."""
        quota = self.store.quota_bytes
        if quota is None:
            return True
        with self._cv:  # accepted, not yet spooled
            queued = sum(item.size for item in self._queue)
        if self._spool_used is not None and self._usage() + queued + size <= quota:
            return True
        self._count_spool()
        return self._usage() + queued + size <= quota

    def _over_quota(self, size: int, origin: str, calling_ae: str | None) -> Outcome | None:
        if self._fits(size):
            if self._quota_refusals and self._usage() < QUOTA_CLEAR_FRACTION * self.store.quota_bytes:  # as the alarm clears
                log.info("store_quota_accepting", refused=self._quota_refusals)
                self._quota_refusals = 0
            return None
        self._quota_refusals += 1
        # once per episode at error level: a modality retrying its backlog would fill the journal with it
        (log.error if self._quota_refusals == 1 else log.debug)(
            "store_quota_reached", quota_bytes=self.store.quota_bytes, origin=origin, calling_ae=calling_ae,
            refused=self._quota_refusals)
        self.bus.publish("alarm", {"kind": "store_quota_reached"})
        return Outcome("refused", "store quota reached")

    def _process(self, encoded: bytes, received: float, origin: str, *, calling_ae: str | None = None,
                 called_ae: str | None = None, peer: str | None = None,
                 digest: str | None = None, item: Item | None = None, received_size: int | None = None) -> Outcome:
        digest = digest or hashlib.sha256(encoded).hexdigest()
        cut = None if received_size is None else (received_size, len(encoded))  # left out at receipt
        try:
            path = self._spool(encoded, received, digest, flush=item is None)
        except OSError as exc:
            log.error("spool_write_failed", error=exc.strerror or str(exc), origin=origin)
            return Outcome("refused", f"cannot write spool: {exc.strerror or exc}")

        receipt = Receipt(received_at=utc_iso(received), origin=origin, path=str(path), sha256=digest,
                          size_bytes=len(encoded), calling_ae=calling_ae, called_ae=called_ae, peer=peer)
        if item is not None and item.attempts >= MAX_ATTEMPTS:  # it would end this run too: keep it, go on
            return self._keep_failed(receipt, "error", f"processing did not finish in {item.attempts} attempts: the "
                                     "agent stopped (killed, crashed or hung) each time while reading, extracting "
                                     "or checking this object", cut)
        tries = _Tries(self, item)  # the part an object can make fail: a death in it counts against the object
        try:
            return self._extract_and_store(encoded, received, origin, path, receipt, calling_ae, tries, cut)
        finally:
            tries.end()

    def _extract_and_store(self, encoded: bytes, received: float, origin: str, path: Path, receipt: Receipt,
                           calling_ae: str | None, tries: "_Tries", cut: tuple[int, int] | None) -> Outcome:
        ds = None
        try:
            ds = read_dataset(encoded)
            receipt.sop_instance_uid = hstr(ds, "SOPInstanceUID")
            receipt.sop_class_uid = hstr(ds, "SOPClassUID")
            receipt.transfer_syntax = hstr(ds.file_meta, "TransferSyntaxUID") if hasattr(ds, "file_meta") else None
            report = extract_dataset(ds)
        except Rejected as exc:
            tries.end()
            return self._keep_failed(receipt, "rejected", phi.redact(str(exc), phi.header_pattern(ds)), cut)
        except Exception as exc:  # any parse failure is kept for inspection; the source goes on
            tries.end()
            reason = str(exc) if isinstance(exc, ExtractionError) else f"{type(exc).__name__}: {exc}"
            return self._keep_failed(receipt, "error", phi.redact(reason, phi.header_pattern(ds)), cut)

        keep_file = False
        try:
            with self.store.transaction() as tx:
                saved = save_report(tx, report, receipt, self.station)
                ingest = Ingest(report=report, receipt=receipt, saved=saved, station=self.station)
                if not saved.duplicate:
                    for stage in self.stages:
                        stage(tx, ingest)
                elif not saved.differs:  # the same bytes in the same second have the first copy's spool name
                    keep_file = tx.execute("SELECT 1 FROM receipts WHERE path = ? AND status = 'stored'",
                                           [str(path)]).fetchone() is not None
                tries.end()  # what is left is the commit: the disk's part, not the object's
        except StoreError as exc:
            tries.end()
            # this object's data, not the disk (nor a damaged file, which a restart sets aside: the object waits)
            if not isinstance(exc.__cause__, sqlite3.OperationalError) and not is_corrupt(exc.__cause__):
                return self._keep_failed(receipt, "error", f"cannot be stored: {exc}", cut)
            log.error("store_write_failed", error=str(exc), origin=origin, calling_ae=calling_ae)
            _unlink_quietly(path)
            return Outcome("refused", f"store: {exc}")
        except Exception as exc:  # a fault this object triggers: keep it for inspection, go on with the others
            tries.end()
            log.exception("processing_failed", error=f"{type(exc).__name__}: {exc}", origin=origin)
            return self._keep_failed(receipt, "error", f"processing failed: {type(exc).__name__}: {exc}", cut)

        if saved.differs:  # a stored SOP instance with other doses: the stored report stays, this one is kept aside
            return self._keep_failed(receipt, DIFFERS, "SOP Instance UID already stored with different dose content: "
                                     + ", ".join(saved.differs) + "; the first stored values stay the record", cut)
        if not saved.duplicate:
            self._spooled(len(encoded))
        status = "duplicate" if saved.duplicate else "stored"
        if saved.duplicate and not keep_file:
            _unlink_quietly(path)  # the first copy is the record
        repeats = self._repeats.note("stored " + str(report.sop_instance_uid)) if saved.duplicate else 1
        if repeats is not None:
            log.info("report_" + status, origin=origin, calling_ae=calling_ae, sop_instance_uid=report.sop_instance_uid,
                     kind=report.kind, modality=report.modality, source=report.source, events=len(report.events),
                     new_events=len(saved.new_event_uids), alerts=len(ingest.alerts), warnings=len(report.warnings),
                     ms=round((time.time() - received) * 1000, 1), **({"times": repeats} if saved.duplicate else {}),
                     **({"pixel_data_left_out_bytes": cut[0] - cut[1]} if cut else {}))
        if not saved.duplicate:
            self.bus.publish("report", ingest)
            for alert in ingest.alerts:
                self.bus.publish("alert", alert)
            self.bus.publish("outbox", None)
        return Outcome(status, ingest=ingest, path=str(path))

    # -- helpers -------------------------------------------------------------------------
    def _spooled(self, size: int) -> None:
        """A receipt whose file stays has committed: add it to the spool estimate for the quota check.

        Counting the spool exactly sums every receipt (16 ms with 100,000 of them), so it is done
        only when the estimate nears the quota; the estimate errs high (files pruned since the
        count are still in it), never low.
        """
        if self._spool_used is not None:  # counted once a quota is checked
            self._spool_used += size

    def _count_spool(self) -> None:
        with self.store.transaction() as tx:
            self._spool_used = spool_bytes(tx)

    def _usage(self) -> int:
        """What counts against the quota: the store's files (as they are now) and the spool estimate."""
        assert self._spool_used is not None
        return self.store.size_bytes() + self._spool_used

    def _spool(self, encoded: bytes, received: float, digest: str, flush: bool = True) -> Path:
        """Write the object's spool file; ``flush`` False: not flushed yet (:meth:`_remove_processed` does)."""
        day = time.strftime("%Y/%m/%d", time.gmtime(received))
        folder = self.spool_dir / day
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%H%M%S', time.gmtime(received))}-{digest[:16]}.dcm"
        _write_durably(path, encoded, flush)
        return path

    def _keep_failed(self, receipt: Receipt, status: str, reason: str, cut: tuple[int, int] | None = None) -> Outcome:
        """``cut``: (received, kept) bytes of an object whose pixel data was left out at receipt."""
        if cut is not None:
            reason += (f"; its pixel data was left out as it was received ({cut[0] - cut[1]:,} of {cut[0]:,} bytes; "
                       "[dicom] header_only_above_mb)")
        kept = self._kept_before(receipt.sha256, status)
        if kept is not None:  # the same bytes were set aside before (a re-send): one copy, one receipt
            if Path(kept) != Path(receipt.path):  # (the same spool name within one second: it is that copy)
                _unlink_quietly(Path(receipt.path))
            repeats = self._repeats.note(f"{status} {receipt.sha256}")
            if repeats is not None:  # times: received since the last line about it
                log.info("report_" + status + "_again", origin=receipt.origin, calling_ae=receipt.calling_ae,
                         sop_class_uid=receipt.sop_class_uid, kept_at=kept, times=repeats)
            return Outcome(status, reason=reason, path=kept)
        src = Path(receipt.path)
        dest = self.failed_dir / src.name
        try:
            self.failed_dir.mkdir(parents=True, exist_ok=True)
            header = _header_only(src) if status == "rejected" else None
            if header is not None:  # a non-dose image: its header says what it is; its pixels are not kept
                _write_durably(dest, header)
                _unlink_quietly(src)
                reason += f"; kept without its pixel data ({receipt.size_bytes - len(header):,} bytes left out)"
                receipt.size_bytes = len(header)  # (what it takes on disk, for the quota)
            else:
                _flush([str(src)], dirs=False)  # (written unflushed by the worker)
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
        self._spooled(receipt.size_bytes)  # kept for inspection: it counts against the quota too
        # not the file's name: exports are often named after the patient
        log.warning("report_" + status, origin=receipt.origin, calling_ae=receipt.calling_ae, reason=reason,
                    sop_class_uid=receipt.sop_class_uid, kept_at=receipt.path,
                    **({"sop_instance_uid": receipt.sop_instance_uid} if status == DIFFERS else {}))
        self.bus.publish("receipt_failed", {"status": status, "reason": reason, "path": receipt.path})
        return Outcome(status, reason=reason, path=receipt.path)


    def _kept_before(self, digest: str, status: str) -> Optional[str]:
        """Where an object with these bytes was set aside with ``status`` before, if its file is still there."""
        try:
            with self.store.transaction() as tx:
                row = tx.execute("SELECT path FROM receipts WHERE sha256 = ? AND status = ? ORDER BY id DESC LIMIT 1",
                                 [digest, status]).fetchone()
        except StoreError:
            return None
        return row[0] if row is not None and Path(row[0]).exists() else None


class _Tries:
    """Names, in the inbox, the object whose processing enters the part it can make fail (reading,
    extraction, the stages) until :meth:`end`; a run that dies in between leaves the name for the
    next start, which counts a death against the object (:meth:`Inbox.holding`)."""

    def __init__(self, pipeline: "Pipeline", item: Item | None):
        self.pipeline = pipeline
        self.open = item is not None and pipeline.inbox is not None and self._hold(item)

    def end(self) -> None:
        if self.open:
            self.open = False
            self._hold(None)

    def _hold(self, item: Item | None) -> bool:
        try:
            self.pipeline.inbox.holding(item)
            return True
        except OSError as exc:  # the disk is failing: processing goes on, only the count is off
            log.warning("inbox_attempt_not_counted", error=exc.strerror or str(exc))
            return False


def _header_only(path: Path) -> bytes | None:
    """The object at ``path`` without its pixel data (None if it has none, or it cannot be cut).

    A router that sends every image of a study to the agent (a thousand CT slices of 0.5 MB per
    examination) would otherwise fill the disk with rejected images within days."""
    try:
        at = pixel_data_offset(path)
    except Exception:  # pydicom raises several kinds on data it cannot read: keep the object whole
        return None
    if at is None:
        return None
    with open(path, "rb") as f:
        return f.read(at)


def _write_durably(path: Path, data: bytes, flush: bool = True) -> None:
    """Write ``data`` to ``path`` through a ``.part`` file, which a failed write removes: nothing would
    (in failed/ it is no receipt's file, and counts against no quota).  ``flush`` False: the file and
    its directory entry are not flushed (:func:`_flush` does it later)."""
    tmp = path.with_suffix(".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if flush:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if flush:
        _fsync_dir(path.parent)


def _flush(paths: list[str], dirs: bool = True) -> None:
    """fsync files written unflushed (one gone already is skipped), then, with ``dirs``, their folders once each."""
    folders = {}
    for name in paths:
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:  # a duplicate's copy, removed: the first copy is the record
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders[os.path.dirname(name)] = None
    for folder in folders if dirs else ():
        _fsync_dir(Path(folder))


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
