"""The Storage SCP: accepted SOP classes, association policy, start and graceful stop.

One AE listens on ``[dicom] port`` and, when ``tls_port`` is set, also on that port with TLS
(:mod:`.tls`); both listeners share the handlers, the AE title rules and ``max_associations``.
"""
from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from typing import Callable

import structlog
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt, register_uid
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import Verification

from agent.config import DicomConfig
from agent import logs
from agent.pipeline import Pipeline

from . import echo, store, tls, wakeup

log = structlog.get_logger("agent.dicom")

_repeats = logs.Repeats()  # the same rejection or abort again: times, how often since the last line about it

# Dose objects and the image/secondary-capture objects whose headers carry dose.
STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.68": "Radiopharmaceutical Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.73": "Patient Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.76": "Enhanced X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
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

# Private Storage SOP classes that come with a forwarded study, answered as the standard ones pynetdicom knows.
PRIVATE_STORAGE_SOP_CLASSES = {
    "1.3.12.2.1107.5.9.1": "SiemensCSANonImageStorage",  # in Siemens CT and MR studies
}
for _uid, _keyword in PRIVATE_STORAGE_SOP_CLASSES.items():
    register_uid(_uid, _keyword, StorageServiceClass)  # pynetdicom's C-STORE service for its C-STOREs


def accepted_sop_classes() -> list[str]:
    """The dose objects, then every other Storage SOP class pynetdicom knows.  A PACS or router that forwards
    whole studies sends presentation states, key object selections, enhanced and tomosynthesis images along
    with the dose report: a class the agent did not accept failed the router's transfer (DCMTK's storescu
    stopped there, before the study's RDSR) and it retried the study for ever.  Such an object is answered
    Success and kept in failed/ as *rejected*, an image without its pixel data.  So is a Siemens CSA
    Non-Image object, a private class pynetdicom does not know: refused, it failed a Siemens study's transfer."""
    others = [c.abstract_syntax for c in AllStoragePresentationContexts if c.abstract_syntax not in STORAGE_SOP_CLASSES]
    return list(STORAGE_SOP_CLASSES) + others + list(PRIVATE_STORAGE_SOP_CLASSES)


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
        for uid in accepted_sop_classes():
            self.ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        storage = store.StoreService(pipeline, release_wait_s=cfg.acse_timeout_s / 2,
                                     header_only_above=int(cfg.header_only_above_mb * (1 << 20)))
        self._handlers = [
            (evt.EVT_C_ECHO, echo.make_handler(healthy)),
            (evt.EVT_C_STORE, storage.on_c_store),
            (evt.EVT_ACSE_RECV, storage.on_acse_recv),
            (evt.EVT_CONN_OPEN, no_delay),
            (evt.EVT_CONN_OPEN, read_timeout),
            (evt.EVT_CONN_CLOSE, closed_before_request),
            (evt.EVT_ESTABLISHED, tls.log_association),
            (evt.EVT_REJECTED, _log_rejected),
            (evt.EVT_ABORTED, _log_aborted),
        ]
        self.server = None
        self.tls_server = None
        self.port: int | None = None
        self.tls_port: int | None = None

    def start(self) -> None:
        """Listen on the plain port, then on the TLS port if configured; raises ``OSError`` (a port
        that cannot be bound, a certificate that cannot be used) with nothing left listening."""
        context = tls.server_context(self.cfg) if self.cfg.tls_port is not None else None
        UnreadableData.install()
        wakeup.install()  # requests handled as they arrive, not on pynetdicom's next 1 ms poll
        self.server = self._listen(self.cfg.bind, self.cfg.port)
        self.port = self.server.server_address[1]
        if context is not None:
            try:
                self.tls_server = self._listen(self.cfg.tls_bind or self.cfg.bind, self.cfg.tls_port, context)
            except OSError:
                self.stop(grace_s=0)
                raise
            self.tls_port = self.tls_server.server_address[1]

    def _listen(self, bind: str, port: int, context=None):
        """Start one listener (TLS with ``context``) and log it; the server, or ``OSError`` naming the port."""
        try:
            server = self.ae.start_server((bind, port), block=False, evt_handlers=self._handlers,
                                          ssl_context=context)
        except OSError as exc:
            what = "DICOM TLS port" if context is not None else "DICOM port"
            raise OSError(exc.errno, f"{what} {bind}:{port}: {exc.strerror or exc}") from exc
        tls_fields = {} if context is None else {"tls": True, "client_certificates": self._client_certificates()}
        log.info("dicom_listening", ae_title=self.cfg.ae_title, bind=bind, port=server.server_address[1],
                 allowed_calling_aes=self.cfg.allowed_calling_aes or "any", **tls_fields)
        return server

    def reload_tls(self) -> None:
        """Read the TLS listener's certificate, key and CA files again (renewed in place, SIGHUP):
        connections accepted from now on use them, associations under way keep theirs.  Files that
        cannot be used leave the previous ones in use, and the log says why."""
        server = self.tls_server
        if server is None:
            return
        try:
            context = tls.server_context(self.cfg)
        except tls.TlsSetupError as exc:
            log.error("dicom_tls_reload_failed", error=str(exc), hint="the previous certificate stays in use")
            return
        server.ssl_context = context
        log.info("dicom_tls_reloaded", cert_file=str(self.cfg.tls_cert_file),
                 client_certificates=self._client_certificates())

    def _client_certificates(self) -> str:
        return "required" if self.cfg.tls_ca_file else "not asked for"

    def active(self) -> int:
        return len(self.ae.active_associations)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop listening, let in-flight associations finish (up to ``grace_s``), then abort the rest."""
        if self.server is None:
            return
        servers = [s for s in (self.server, self.tls_server) if s is not None]
        self.server = self.tls_server = None
        for server in servers:
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


def read_timeout(event) -> None:
    """The network timeout on each read of an accepted connection.  pynetdicom sets it on the
    listening socket only, and Python hands out accepted sockets blocking: a peer that stopped in
    the middle of a PDU (power lost, cable pulled) held its association slot until the peer's
    side was closed, and kept the agent from exiting.  Now the read fails after
    ``network_timeout_s`` of silence and pynetdicom closes the connection."""
    try:
        event.assoc.dul.socket.socket.settimeout(event.assoc.network_timeout)
    except (AttributeError, OSError):
        pass


def closed_before_request(event) -> None:
    """A connection closed before it asked for an association (a monitoring system's TCP check, a
    port scan, an HTTP health check, a modality giving up): pynetdicom's association thread goes on
    waiting for the request until ``acse_timeout_s``, holding one of ``max_associations`` slots and
    the agent's stop.  Its wait is ended now, as pynetdicom ends it on the timeout (the DUL is already
    idle).  Closed in Sta2 (AA-5, AA-2) or in Sta13 with nothing ever handed to the association
    thread: a peer whose first bytes were no PDU was sent an A-ABORT from Sta2 (AA-1) and closed."""
    assoc = event.assoc
    try:
        dul = assoc.dul
        state = dul.state_machine.current_state
        waiting = (assoc.is_acceptor and state in ("Sta2", "Sta13") and assoc.requestor.primitive is None
                   and dul.to_user_queue.empty()
                   and not (assoc.is_established or assoc.is_rejected or assoc.is_aborted or assoc.is_released))
    except AttributeError:
        return
    if waiting:
        dul.to_user_queue.put(None)


def _log_rejected(event) -> None:
    """Which rejection it was: hospital IT must tell a calling AE that is not allowed from a full agent."""
    sent = getattr(event.assoc.acceptor, "primitive", None)  # the A-ASSOCIATE-RJ pynetdicom sent
    try:
        why = {"reason": sent.reason_str, "result": sent.result_str}
    except (AttributeError, KeyError, ValueError):
        why = {}
    calling_ae, peer = event.assoc.requestor.ae_title.strip(), event.assoc.requestor.address
    times = _repeats.note(("rejected", calling_ae, peer, tuple(why.items())))
    if times is not None:  # a modality retrying every few seconds: one line a minute, with the count
        log.warning("association_rejected", calling_ae=calling_ae, peer=peer, times=times, **why)


def _log_aborted(event) -> None:
    calling_ae, peer = event.assoc.requestor.ae_title.strip(), event.assoc.requestor.address
    times = _repeats.note(("aborted", calling_ae, peer))
    if times is not None:
        log.warning("association_aborted", calling_ae=calling_ae, peer=peer, times=times)


class UnreadableData(logging.Filter):
    """pynetdicom's errors about a connection's bytes that are not DICOM PDUs (a port scanner or
    monitoring probe, HTTP, TLS sent to the plain port, a peer that reset the connection in a PDU).

    pynetdicom logs one error per 6 bytes it could not read as a PDU header and a traceback per reset
    connection: about 20 lines, none naming the peer, for one 64-byte probe (90 KB a minute from a
    scanner probing twice a second).  This filter drops them and logs ``dicom_unreadable_data``
    instead: the first with the peer and what was wrong, then at most one a minute with how many
    connections (about: counted by reader thread) sent such data since the last line."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._connections = 0  # connections with unreadable data since the last line
        self._last_thread: int | None = None

    @classmethod
    def install(cls) -> None:
        """Put the filter on pynetdicom's upper-layer logger (once)."""
        dul = logging.getLogger("pynetdicom.dul")
        if not any(isinstance(f, cls) for f in dul.filters):
            dul.addFilter(cls())

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName != "_read_pdu_data":
            return True
        if record.exc_info is not None and record.msg is record.exc_info[1]:
            return False  # the traceback that follows pynetdicom's own line about the same read
        with self._lock:
            if record.thread != self._last_thread:  # each association has its own reader thread
                self._last_thread = record.thread
                self._connections += 1
            now = time.monotonic()
            if self._logged_at is not None and now - self._logged_at < logs.REPEAT_LOG_S:
                return False
            self._logged_at, connections, self._connections = now, self._connections, 0
        error = record.getMessage()
        cause = sys.exc_info()[1]  # the socket error behind "Connection closed before the entire PDU ..."
        if cause is not None:
            error += f": {cause}"
        hint = ("a TLS handshake: the peer uses TLS on the plain DICOM port" if "'0x16'" in error
                else "not a DICOM peer (a port scanner, a health check, HTTP), or the connection was cut")
        log.warning("dicom_unreadable_data", peer=_peer(), error=error, hint=hint, connections=connections)
        return False


def _peer() -> str | None:
    """The peer of the association whose reader thread this is (pynetdicom's DUL thread)."""
    try:
        assoc = threading.current_thread().assoc  # type: ignore[attr-defined]
        return f"{assoc.requestor.address}:{assoc.requestor.port}"
    except Exception:
        return None
