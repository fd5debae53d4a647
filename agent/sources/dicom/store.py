"""C-STORE: hand the encoded object to the pipeline; answer only after it is durable.

Status mapping (see docs/conformance.md):
``stored``/``duplicate``/``rejected`` → 0x0000 Success (the object is on disk; a non-dose
object is kept for inspection, re-sending it would not help); ``error`` (a dose object we
cannot read) → 0xC000 Cannot understand (kept for inspection; the modality shows a failure a
person will look at); ``refused`` (store or spool not writable, quota reached) → 0xA700 Out of
Resources, so that the modality keeps the object and retries.
"""
from __future__ import annotations

from typing import Callable

import structlog
from pynetdicom import events

from agent.pipeline import Pipeline

log = structlog.get_logger("agent.dicom")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

STATUS = {"stored": SUCCESS, "duplicate": SUCCESS, "rejected": SUCCESS,
          "error": CANNOT_UNDERSTAND, "refused": OUT_OF_RESOURCES}


def make_handler(pipeline: Pipeline) -> Callable[[events.Event], int]:
    def handle_store(event: events.Event) -> int:
        assoc = event.assoc
        try:
            encoded = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # a dataset pynetdicom cannot re-encode: nothing stored, let it retry
            log.error("cstore_decode_failed", error=f"{type(exc).__name__}: {exc}")
            return OUT_OF_RESOURCES
        outcome = pipeline.ingest(
            encoded, "dicom",
            calling_ae=assoc.requestor.ae_title.strip(),
            called_ae=assoc.acceptor.ae_title.strip(),
            peer=f"{assoc.requestor.address}:{assoc.requestor.port}",
        )
        return STATUS[outcome.status]

    return handle_store
