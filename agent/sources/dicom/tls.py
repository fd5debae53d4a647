"""DICOM over TLS: the server side's TLS policy, for the SCP's second listener (``[dicom] tls_port``).

TLS 1.2 or later with the ``ssl`` module's default ciphers (DICOM PS3.15's BCP 195 profiles ask
for no less), the agent's certificate and key, and, when ``tls_ca_file`` is given, a certificate
from every sender, verified against those CAs (mutual TLS, as IHE ATNA asks of a secure node).

pynetdicom performs the handshake in its listener's thread, before any association exists, so a
sender that connects and says nothing would hold up every other TLS sender; the handshake must
therefore finish within :data:`HANDSHAKE_TIMEOUT_S`, after which the socket is as blocking as a
plain DICOM one.
"""
from __future__ import annotations

import socket
import ssl
from pathlib import Path

import structlog

from agent.config import DicomConfig

log = structlog.get_logger("agent.dicom")

HANDSHAKE_TIMEOUT_S = 10.0


class TlsSetupError(OSError):
    """The certificate, key or CA file cannot be used; the message names the file."""


class _ServerContext(ssl.SSLContext):
    handshake_timeout_s = HANDSHAKE_TIMEOUT_S

    def wrap_socket(self, sock: socket.socket, *args, **kwargs) -> ssl.SSLSocket:  # type: ignore[override]
        sock.settimeout(self.handshake_timeout_s)
        try:
            peer = "{}:{}".format(*sock.getpeername()[:2])
        except OSError:
            peer = None
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)
        except (OSError, ValueError) as exc:
            # a failed or stalled handshake: say so (the modality's side only sees a broken connection),
            # and the listener goes on with the next sender
            log.warning("dicom_tls_handshake_failed", peer=peer, error=_reason(exc))
            sock.close()
            raise
        wrapped.settimeout(None)
        return wrapped


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER":
        return "WRONG_VERSION_NUMBER: not TLS (plain DICOM sent to the TLS port?)"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason  # e.g. "CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no handshake within the time allowed"
    return str(exc) or type(exc).__name__


def server_context(cfg: DicomConfig) -> ssl.SSLContext:
    """The context the TLS listener wraps each accepted connection in; raises :class:`TlsSetupError`."""
    context = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.handshake_timeout_s = min(HANDSHAKE_TIMEOUT_S, cfg.acse_timeout_s)
    assert cfg.tls_cert_file is not None and cfg.tls_key_file is not None  # the config requires them
    _readable(cfg.tls_cert_file, "tls_cert_file")
    _readable(cfg.tls_key_file, "tls_key_file")  # OpenSSL names the certificate when it cannot read the key
    _load(f"{cfg.tls_cert_file} with {cfg.tls_key_file}", "tls_cert_file/tls_key_file",
          lambda: context.load_cert_chain(str(cfg.tls_cert_file), str(cfg.tls_key_file)))
    if cfg.tls_ca_file is not None:
        _load(cfg.tls_ca_file, "tls_ca_file", lambda: context.load_verify_locations(cafile=str(cfg.tls_ca_file)))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _readable(path: Path, key: str) -> None:
    """Raise :class:`TlsSetupError` naming ``key`` and its file when the agent's user cannot open it."""
    try:
        path.open("rb").close()
    except OSError as exc:
        raise TlsSetupError(f"[dicom] {key}: cannot read {path}: {exc.strerror}") from exc


def _load(path: Path | str, key: str, load) -> None:
    try:
        load()
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"[dicom] {key}: cannot use {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def log_association(event) -> None:
    """EVT_ESTABLISHED: for an association over TLS, log who it is (an audit trail of senders)."""
    sock = getattr(getattr(getattr(event.assoc, "dul", None), "socket", None), "socket", None)
    if not isinstance(sock, ssl.SSLSocket):
        return
    try:
        peer_cert = sock.getpeercert() or {}
    except (ValueError, AttributeError, OSError):  # closed by the peer at once: no handshake left to ask
        peer_cert = {}
    subject = dict(rdn[0] for rdn in peer_cert.get("subject", ()) if rdn)
    cipher = sock.cipher()
    log.info("dicom_tls_association", calling_ae=event.assoc.requestor.ae_title.strip(),
             peer=f"{event.assoc.requestor.address}:{event.assoc.requestor.port}", tls_version=sock.version(),
             cipher=cipher[0] if cipher else None, client_certificate=subject.get("commonName"))
