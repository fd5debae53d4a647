"""C-STORE: make the object durable in the pipeline's inbox, answer; confirm a release once processed.

Status mapping (see docs/conformance.md): the object is durable in the inbox (one committed
SQLite row) → 0x0000 Success; it could not be made durable (inbox or disk not writable,
store quota reached) → 0xA700 Out of Resources, so that the modality keeps it and retries.
Extraction, checks and the store follow on the pipeline's worker right after the answer; an
object that turns out not to be a dose report, or that cannot be read, is kept for inspection
and reported in the log, ``alara-edge studies`` and the console.

When the modality releases the association, the release is confirmed only once every object
it sent has been processed (or ``acse_timeout_s / 2`` has passed; they are durable either
way), so a finished association means reports stored and alerts raised.
"""
from __future__ import annotations

import weakref

import structlog
from pynetdicom import events
from pynetdicom.pdu_primitives import A_RELEASE

from agent.pipeline import Pipeline

log = structlog.get_logger("agent.dicom")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700

STATUS = {"accepted": SUCCESS, "refused": OUT_OF_RESOURCES}


class StoreService:
    """The handlers for ``EVT_C_STORE`` and ``EVT_ACSE_RECV`` (the release request)."""

    def __init__(self, pipeline: Pipeline, release_wait_s: float):
        self.pipeline = pipeline
        self.release_wait_s = release_wait_s
        self._last_item: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # association → inbox id

    def on_c_store(self, event: events.Event) -> int:
        assoc = event.assoc
        try:
            encoded = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # a dataset pynetdicom cannot re-encode: nothing stored, let it retry
            log.error("cstore_decode_failed", error=f"{type(exc).__name__}: {exc}")
            return OUT_OF_RESOURCES
        outcome = self.pipeline.receive(
            encoded, "dicom",
            calling_ae=assoc.requestor.ae_title.strip(),
            called_ae=assoc.acceptor.ae_title.strip(),
            peer=f"{assoc.requestor.address}:{assoc.requestor.port}",
        )
        if outcome.item_id is not None:
            self._last_item[assoc] = outcome.item_id
        return STATUS[outcome.status]

    def on_acse_recv(self, event: events.Event) -> None:
        primitive = event.primitive
        if not (isinstance(primitive, A_RELEASE) and primitive.result is None):  # only a release *request*
            return
        last = self._last_item.pop(event.assoc, None)
        if last is not None and not self.pipeline.wait_processed(last, self.release_wait_s):
            log.warning("release_before_processed", calling_ae=event.assoc.requestor.ae_title.strip(),
                        waiting=self.pipeline.pending())
