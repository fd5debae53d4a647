"""DICOM over TLS (``[dicom] tls_port``), on loopback with certificates made by the test: what
hospital IT sets up and what a modality sees."""
import json
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.request

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from agent.config import check_text
from simulator import rdsr
from tests.certs import make_pki
from tests.conftest import dcmtk, free_port, wait_for

ELR = "1.2.840.10008.1.2.1"  # explicit VR little endian


def tls_config(pki, port: int, *, ca: bool = False, extra: str = "") -> str:
    text = (f'[dicom]\ntls_port = {port}\ntls_cert_file = "{pki.server_cert}"\n'
            f'tls_key_file = "{pki.server_key}"\n{extra}')
    return text + (f'tls_ca_file = "{pki.ca}"\n' if ca else "")


def client(pki, cert=None, key=None) -> ssl.SSLContext:
    """What a modality configured for DICOM TLS holds: the CA of the agent's certificate, perhaps its own."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if cert:
        context.load_cert_chain(str(cert), str(key))
    return context


def report(n: int = 0):
    return rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{41 + n}.5")])


def c_store(port: int, ds, context: ssl.SSLContext | None, timeout: float = 15) -> int | None:
    """One C-STORE on its own association; the status, or None when no association was made."""
    ae = AE(ae_title="CT_TLS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    ae.add_requested_context(ds.SOPClassUID, ELR)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="ALARA_EDGE",
                         tls_args=(context, "127.0.0.1") if context else None)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status) if status and "Status" in status else -1
    finally:
        assoc.release()


def tls_associations(agent) -> list[dict]:
    return [e for e in agent.log_events() if e.get("event") == "dicom_tls_association"]


def stored(agent, sop_uid: str) -> bool:
    with sqlite3.connect(agent.db_path) as db:
        return db.execute("SELECT 1 FROM reports WHERE sop_instance_uid = ?", [sop_uid]).fetchone() is not None


def test_a_report_sent_over_tls_is_stored_and_plain_dicom_is_refused_on_the_tls_port(agent_process, tmp_path):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    agent = agent_process(tls_config(pki, port))
    ds = report()
    assert c_store(port, ds, client(pki)) == 0
    assert wait_for(lambda: stored(agent, ds.SOPInstanceUID), timeout=15)
    # a sender speaking plain DICOM to the TLS port gets no association, and the listener goes on
    assert c_store(port, report(1), None, timeout=5) is None
    assert wait_for(lambda: [e for e in agent.log_events() if e.get("event") == "dicom_tls_handshake_failed"])
    failed = [e for e in agent.log_events() if e.get("event") == "dicom_tls_handshake_failed"][0]
    assert failed["peer"].startswith("127.0.0.1:") and "not TLS" in failed["error"]
    assert c_store(port, report(2), client(pki)) == 0
    # a sender that does not trust the agent's certificate does not associate either
    other = make_pki(tmp_path / "other")
    assert c_store(port, report(3), client(other), timeout=5) is None
    # the plain port is still there, for `alara-edge import` and for modalities without TLS
    assert c_store(agent.dicom_port, report(4), None) == 0
    wait_for(lambda: len(tls_associations(agent)) == 2)  # over TLS only
    assert tls_associations(agent)[0]["client_certificate"] is None  # none asked for
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.console_port}/healthz", timeout=10) as r:
        assert json.load(r)["parts"]["dicom"]["tls_port"] == port
    listening = [e for e in agent.log_events() if e.get("event") == "dicom_listening"]
    assert [e.get("tls", False) for e in listening] == [False, True]
    assert listening[1]["port"] == port and listening[1]["client_certificates"] == "not asked for"


def test_with_a_ca_file_only_senders_with_a_certificate_it_signed_may_associate(agent_process, tmp_path):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    agent = agent_process(tls_config(pki, port, ca=True))
    assert c_store(port, report(), client(pki), timeout=5) is None  # no certificate
    assert c_store(port, report(1), client(pki, pki.stranger_cert, pki.stranger_key), timeout=5) is None
    def errors():
        return [e["error"] for e in agent.log_events() if e.get("event") == "dicom_tls_handshake_failed"]

    assert wait_for(lambda: len(errors()) == 2)
    assert errors() == ["PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED"]
    ds = report(2)
    assert c_store(port, ds, client(pki, pki.client_cert, pki.client_key)) == 0
    assert wait_for(lambda: stored(agent, ds.SOPInstanceUID), timeout=15)
    assert [e for e in agent.log_events() if e.get("tls")][0]["client_certificates"] == "required"
    (accepted,) = wait_for(lambda: tls_associations(agent))
    assert accepted["client_certificate"] == "ct-01" and accepted["calling_ae"] == "CT_TLS"
    assert accepted["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_a_connection_that_never_starts_its_handshake_does_not_hold_up_other_senders(agent_process, tmp_path):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    agent = agent_process(tls_config(pki, port, extra="acse_timeout_s = 2\n"))
    silent = socket.create_connection(("127.0.0.1", port))  # connects, then says nothing
    try:
        time.sleep(0.2)
        started = time.monotonic()
        ds = report()
        assert c_store(port, ds, client(pki), timeout=20) == 0
        assert time.monotonic() - started < 10  # the handshake wait is bounded by acse_timeout_s
        assert any(e.get("event") == "dicom_tls_handshake_failed" and e["error"].startswith("no handshake")
                   for e in agent.log_events())
        assert wait_for(lambda: stored(agent, ds.SOPInstanceUID), timeout=15)
    finally:
        silent.close()


@pytest.mark.skipif(not dcmtk("storescu"), reason="DCMTK storescu not installed (test.sh installs dcmtk)")
def test_dcmtk_storescu_sends_over_tls_with_a_client_certificate(agent_process, tmp_path):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    agent = agent_process(tls_config(pki, port, ca=True))
    path = tmp_path / "report.dcm"
    ds = report()
    path.write_bytes(rdsr.encode(ds))
    r = subprocess.run([dcmtk("storescu"), "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca),
                        "-aec", "ALARA_EDGE", "127.0.0.1", str(port), str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: stored(agent, ds.SOPInstanceUID), timeout=15)


def test_tls_settings_are_checked_before_the_agent_starts(agent_process, tmp_path):
    problems = check_text("[dicom]\ntls_port = 2762\n")
    assert len(problems) == 1 and "tls_port needs tls_cert_file and tls_key_file" in problems[0]
    problems = check_text('[dicom]\ntls_ca_file = "/etc/ssl/ca.pem"\n')
    assert len(problems) == 1 and "tls_ca_file without tls_port" in problems[0]
    assert check_text("[dicom]\nport = 2762\ntls_port = 2762\ntls_cert_file = \"a\"\ntls_key_file = \"b\"\n")
    # a key file the agent cannot read: it does not start, and says which file
    pki = make_pki(tmp_path / "pki")
    missing = tmp_path / "pki" / "gone.key"
    with pytest.raises(RuntimeError) as failed:
        agent_process(tls_config(pki, free_port()).replace(str(pki.server_key), str(missing)))
    assert "agent_start_failed" in str(failed.value)
    # the key, not the certificate (OpenSSL reports an unreadable key under the certificate's name)
    assert f"tls_key_file: cannot read {missing}" in str(failed.value)
    assert f"cannot use {pki.server_cert}" not in str(failed.value)


def test_a_renewed_certificate_is_taken_on_sighup_without_a_restart(agent_process, tmp_path):
    """Hospital certificates are renewed every year or more often: hospital IT replaces the files and
    reloads (systemctl reload), and senders see the new certificate without the agent stopping."""
    import shutil
    import signal

    old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(old.server_cert, live / "server.crt")
    shutil.copy(old.server_key, live / "server.key")
    port = free_port()
    agent = agent_process(f'[dicom]\ntls_port = {port}\ntls_cert_file = "{live / "server.crt"}"\n'
                          f'tls_key_file = "{live / "server.key"}"\n')
    assert c_store(port, report(), client(old)) == 0

    def reloaded(event: str, n: int = 1) -> bool:
        return len([e for e in agent.log_events() if e.get("event") == event]) >= n

    (live / "server.crt").write_text("not a certificate")  # a renewal half done: the old one stays in use
    agent.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: reloaded("dicom_tls_reload_failed"), timeout=15)
    assert c_store(port, report(1), client(old)) == 0

    shutil.copy(new.server_cert, live / "server.crt")
    shutil.copy(new.server_key, live / "server.key")
    agent.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: reloaded("dicom_tls_reloaded"), timeout=15)
    assert c_store(port, report(2), client(new)) == 0
    assert c_store(port, report(3), client(old), timeout=5) is None  # the old certificate is gone
    assert agent.proc.poll() is None


def test_an_association_whose_tls_connection_is_already_gone_is_logged_without_a_traceback():
    """A sender that asks for an association over TLS and closes at once: by the time the association is
    logged its TLS socket has no handshake to ask about; that raised in the handler, and pynetdicom logged
    the exception with a traceback for hospital IT to puzzle over."""
    from types import SimpleNamespace

    from structlog.testing import capture_logs

    from agent.sources.dicom.tls import log_association

    a, b = socket.socketpair()
    sock = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    try:
        assoc = SimpleNamespace(dul=SimpleNamespace(socket=SimpleNamespace(socket=sock)),
                                requestor=SimpleNamespace(ae_title="CT_ROOM_1 ", address="127.0.0.1", port=40000))
        with capture_logs() as logs:
            log_association(SimpleNamespace(assoc=assoc))
    finally:
        sock.close()
        b.close()
    assert [(e["event"], e["calling_ae"], e["client_certificate"]) for e in logs] == [
        ("dicom_tls_association", "CT_ROOM_1", None)]
