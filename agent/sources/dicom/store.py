"""C-STORE: make the object durable in the pipeline's inbox, answer; confirm a release once processed.

Status mapping (see docs/conformance.md): the object is durable in the inbox (one committed
SQLite row) → 0x0000 Success; it could not be made durable (inbox or disk not writable,
store quota reached) → 0xA700 Out of Resources, so that the modality keeps it and retries; it never
can be (larger than an inbox row, and its pixel data could not be left out) → 0xC000, for good.
Extraction, checks and the store follow on the pipeline's worker right after the answer; an
object that turns out not to be a dose report, or that cannot be read, is kept for inspection
and reported in the log, ``alara-edge studies`` and the console.

When the modality releases the association, the release is confirmed only once every object
it sent has been processed (or ``acse_timeout_s / 2`` has passed; they are durable either
way), so a finished association means reports stored and alerts raised.

An object larger than ``[dicom] header_only_above_mb``, other than an SR, is put into the inbox without
its pixel data (and what follows it), cut off as it is received: the agent reads only headers, and a
1-3 GB tomosynthesis or enhanced multi-frame object would not fit in an inbox row (SQLite's maximum
length, 1e9 bytes), nor belongs in a small box's memory and SD card twice.
"""
from __future__ import annotations

import io
import weakref

import structlog
from pynetdicom import events
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.pdu_primitives import A_RELEASE

from agent.extract.reader import dataset_pixel_data_offset
from agent.pipeline import Pipeline

log = structlog.get_logger("agent.dicom")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000  # PS3.4 Table B.2-1 "Error: Cannot understand": a failure not worth retrying

STATUS = {"accepted": SUCCESS, "refused": OUT_OF_RESOURCES, "too_large": CANNOT_UNDERSTAND}
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # every SR storage class: a dose report is never cut


class StoreService:
    """The handlers for ``EVT_C_STORE`` and ``EVT_ACSE_RECV`` (the release request)."""

    def __init__(self, pipeline: Pipeline, release_wait_s: float, header_only_above: int = 64 << 20):
        self.pipeline = pipeline
        self.release_wait_s = release_wait_s
        self.header_only_above = header_only_above  # bytes
        self._last_item: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # association → inbox id

    def on_c_store(self, event: events.Event) -> int:
        assoc = event.assoc
        calling_ae = assoc.requestor.ae_title.strip()
        try:
            encoded, received_size = self._encoded(event, calling_ae)
        except Exception as exc:  # a dataset pynetdicom cannot re-encode: nothing stored, let it retry
            log.error("cstore_decode_failed", error=f"{type(exc).__name__}: {exc}")
            return OUT_OF_RESOURCES
        outcome = self.pipeline.receive(
            encoded, "dicom",
            calling_ae=calling_ae,
            called_ae=assoc.acceptor.ae_title.strip(),
            peer=f"{assoc.requestor.address}:{assoc.requestor.port}",
            received_size=received_size,
        )
        if outcome.item_id is not None:
            self._last_item[assoc] = outcome.item_id
        return STATUS[outcome.status]

    def _encoded(self, event: events.Event, calling_ae: str) -> tuple[bytes, int | None]:
        """The object as a DICOM file, and its size as received if its pixel data was left out: an object
        over :attr:`header_only_above` that is not an SR, and whose pixel data can be found (not in a
        deflated dataset), is cut there, before it is copied."""
        stream = event.request.DataSet
        size = stream.seek(0, io.SEEK_END)
        if size > self.header_only_above and not str(event.request.AffectedSOPClassUID).startswith(SR_CLASS_PREFIX):
            stream.seek(0)
            meta = event.file_meta
            try:
                at, sop_class = dataset_pixel_data_offset(stream, meta.TransferSyntaxUID)
            except Exception:  # a header pydicom cannot read: kept whole, and read (or kept as an error) later
                at, sop_class = None, ""
            if at is not None and not sop_class.startswith(SR_CLASS_PREFIX):
                with stream.getbuffer() as view:
                    header = b"".join((b"\x00" * 128, b"DICM", encode_file_meta(meta), view[:at]))
                log.info("pixel_data_left_out", calling_ae=calling_ae, sop_class_uid=sop_class,
                         received_bytes=size, kept_bytes=len(header))
                return header, size
        return event.encoded_dataset(include_meta=True), None

    def on_acse_recv(self, event: events.Event) -> None:
        primitive = event.primitive
        if not (isinstance(primitive, A_RELEASE) and primitive.result is None):  # only a release *request*
            return
        last = self._last_item.pop(event.assoc, None)
        if last is not None and not self.pipeline.wait_processed(last, self.release_wait_s):
            log.warning("release_before_processed", calling_ae=event.assoc.requestor.ae_title.strip(),
                        waiting=self.pipeline.pending())
