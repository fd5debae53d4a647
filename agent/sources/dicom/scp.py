"""The Storage SCP: accepted SOP classes, association policy, start and graceful stop."""
from __future__ import annotations

import socket
import time
from typing import Callable

import structlog
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from agent.config import DicomConfig
from agent.pipeline import Pipeline

from . import echo, store

log = structlog.get_logger("agent.dicom")

# Dose objects and the image/secondary-capture objects whose headers carry dose.
STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.68": "Radiopharmaceutical Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.73": "Patient Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.3": "Digital Intra-Oral X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic Image",
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image",
}


class DicomSource:
    """C-ECHO and C-STORE SCP feeding :class:`Pipeline`. ``start()`` returns once listening."""

    def __init__(self, cfg: DicomConfig, pipeline: Pipeline, healthy: Callable[[], bool] = lambda: True):
        self.cfg = cfg
        self.pipeline = pipeline
        self.ae = AE(ae_title=cfg.ae_title)
        self.ae.maximum_associations = cfg.max_associations
        self.ae.acse_timeout = cfg.acse_timeout_s
        self.ae.dimse_timeout = cfg.dimse_timeout_s
        self.ae.network_timeout = cfg.network_timeout_s
        self.ae.require_called_aet = False
        if cfg.allowed_calling_aes:
            self.ae.require_calling_aet = list(cfg.allowed_calling_aes)
        self.ae.add_supported_context(Verification)
        for uid in STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        storage = store.StoreService(pipeline, release_wait_s=cfg.acse_timeout_s / 2)
        self._handlers = [
            (evt.EVT_C_ECHO, echo.make_handler(healthy)),
            (evt.EVT_C_STORE, storage.on_c_store),
            (evt.EVT_ACSE_RECV, storage.on_acse_recv),
            (evt.EVT_CONN_OPEN, no_delay),
            (evt.EVT_REJECTED, _log_rejected),
            (evt.EVT_ABORTED, _log_aborted),
        ]
        self.server = None
        self.port: int | None = None

    def start(self) -> None:
        try:
            self.server = self.ae.start_server((self.cfg.bind, self.cfg.port), block=False,
                                               evt_handlers=self._handlers)
        except OSError as exc:
            raise OSError(exc.errno, f"DICOM port {self.cfg.bind}:{self.cfg.port}: {exc.strerror or exc}") from exc
        self.port = self.server.server_address[1]
        log.info("dicom_listening", ae_title=self.cfg.ae_title, bind=self.cfg.bind, port=self.port,
                 allowed_calling_aes=self.cfg.allowed_calling_aes or "any")

    def active(self) -> int:
        return len(self.ae.active_associations)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop listening, let in-flight associations finish (up to ``grace_s``), then abort the rest."""
        if self.server is None:
            return
        server, self.server = self.server, None
        server.shutdown()  # stop accepting new associations
        deadline = time.monotonic() + grace_s
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        left = len(self.ae.active_associations)
        self.ae.shutdown()
        log.info("dicom_stopped", aborted_associations=left)


def no_delay(event) -> None:
    """TCP_NODELAY: a C-STORE is several small PDUs; with Nagle's algorithm and delayed ACKs each
    exchange stalls ~40 ms on Linux (measured: bench/scp_ingest.py)."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def _log_rejected(event) -> None:
    log.warning("association_rejected", calling_ae=event.assoc.requestor.ae_title.strip(),
                peer=event.assoc.requestor.address)


def _log_aborted(event) -> None:
    log.warning("association_aborted", calling_ae=event.assoc.requestor.ae_title.strip(),
                peer=event.assoc.requestor.address)
