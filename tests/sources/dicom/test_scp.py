"""The Storage SCP over real DICOM on loopback: what a modality and hospital IT would see."""
import io
import json
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from structlog.testing import capture_logs

from agent.sources.dicom.scu import echo, send
from simulator import rdsr
from tests.conftest import CORPUS, REPO, dcmtk, wait_for

DOSE_FILES = sorted(p.name for p in CORPUS.glob("*RDSR*.dcm")) + ["CT-ESR-GE_Optima.dcm", "CT-ESR-GE_VCT.dcm"]


def studies(agent):
    out = agent.cli("studies", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def stored_count(agent):
    with sqlite3.connect(agent.db_path) as db:
        return db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]


def test_echo_with_dcmtk_and_pynetdicom(agent_process):
    agent = agent_process()
    assert echo("127.0.0.1", agent.dicom_port) == 0
    if dcmtk("echoscu"):
        r = subprocess.run([dcmtk("echoscu"), "-aec", "ALARA_EDGE", "127.0.0.1", str(agent.dicom_port)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not dcmtk("storescu"), reason="DCMTK storescu not installed (test.sh installs dcmtk)")
def test_corpus_sent_with_storescu_arrives_and_a_resend_changes_nothing(agent_process):
    agent = agent_process()
    files = [str(CORPUS / f) for f in DOSE_FILES]
    r = subprocess.run([dcmtk("storescu"), "-R", "-aec", "ALARA_EDGE", "-aet", "DCMTK_SCU", "127.0.0.1", str(agent.dicom_port), *files],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Store failed" not in r.stderr, r.stderr
    first = studies(agent)
    # RF-RDSR-Siemens-Zee_adjusted.dcm re-uses the SOP Instance UID of RF-RDSR-Siemens-Zee.dcm: a no-op
    assert stored_count(agent) == len(DOSE_FILES) - 1
    subprocess.run([dcmtk("storescu"), "-R", "-aec", "ALARA_EDGE", "127.0.0.1", str(agent.dicom_port), *files[:10]],
                   capture_output=True, timeout=300, check=True)
    assert stored_count(agent) == len(DOSE_FILES) - 1
    assert studies(agent)["studies"] == [dict(s) for s in first["studies"]]


def test_cumulative_siemens_series_ends_with_the_last_reports_total(agent_process):
    agent = agent_process()
    files = [CORPUS / f"CT-RDSR-Siemens-Multi-{i}.dcm" for i in (1, 2, 3)]
    datasets = [pydicom.dcmread(f) for f in files]
    assert send(datasets, "127.0.0.1", agent.dicom_port) == [0, 0, 0]
    last = datasets[-1]
    stated = _dlp_total(last)
    (study,) = [s for s in studies(agent)["studies"] if s["study_instance_uid"] == last.StudyInstanceUID]
    assert study["totals"]["ct_dlp_total_mGycm"] == stated
    assert study["totals"]["events"] == 3


def _dlp_total(ds):
    for item in ds.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "113811":
            for sub in item.ContentSequence:
                if sub.ConceptNameCodeSequence[0].CodeValue == "113813":
                    return float(sub.MeasuredValueSequence[0].NumericValue)
    raise AssertionError("no DLP total in file")


def test_success_is_only_sent_once_durable_sigkill_loses_nothing(agent_process):
    agent = agent_process()
    reports = [rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + i}.5")]) for i in range(15)]
    assert send(reports, "127.0.0.1", agent.dicom_port) == [0] * 15
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    with sqlite3.connect(agent.db_path) as db:
        uids = {r[0] for r in db.execute("SELECT sop_instance_uid FROM reports")}
        paths = [r[0] for r in db.execute("SELECT path FROM receipts WHERE status = 'stored'")]
    assert uids == {str(r.SOPInstanceUID) for r in reports}
    assert all(pydicom.dcmread(p).SOPInstanceUID in uids for p in paths)


def test_sigkill_after_success_before_processing_loses_nothing(agent_process):
    """Success means durable in the inbox: what a kill interrupts is processed at the next start, once."""
    from pynetdicom import AE

    agent = agent_process()
    reports = [rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + i}.5")]) for i in range(30)]
    ae = AE(ae_title="CT1")
    ae.add_requested_context(reports[0].SOPClassUID, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", agent.dicom_port, ae_title="ALARA_EDGE")
    assert [assoc.send_c_store(r).Status for r in reports] == [0] * 30
    agent.proc.send_signal(signal.SIGKILL)  # no release: the worker may still be behind the answers
    agent.proc.wait()
    assoc.abort()
    agent.start()
    wait_for(lambda: stored_count(agent) == 30, 30, what="the 30 reports after the restart")
    with sqlite3.connect(agent.db_path) as db:
        uids = [r[0] for r in db.execute("SELECT sop_instance_uid FROM reports")]
        receipts = db.execute("SELECT status, COUNT(*) FROM receipts GROUP BY status").fetchall()
    assert sorted(uids) == sorted(str(r.SOPInstanceUID) for r in reports)
    assert receipts == [("stored", 30)]


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34",
                                       "1.2.840.10008.5.1.4.1.1.88.35"])
def test_a_dose_report_in_a_general_sr_class_is_received_and_read(agent_process, sop_class):
    """Vendors send the dose report's content in Comprehensive, Comprehensive 3D or Extensible SR too."""
    agent = agent_process()
    ds = rdsr.ct_report([rdsr.CTSeries("Chest", target_region="Chest", ctdivol="7.25", dlp="301.5")])
    ds.SOPClassUID = sop_class
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPClassUID = sop_class
    assert send([ds], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: stored_count(agent) == 1, 20, what="the report")
    with sqlite3.connect(agent.db_path) as db:
        row = db.execute("SELECT sop_class_uid, source, json_extract(record, '$.events[0].dlp_mGycm') FROM reports").fetchone()
    assert row == (sop_class, "enhanced-sr", 301.5)


def test_an_enhanced_xray_radiation_dose_sr_is_received_and_read_as_a_dose_report(agent_process):
    """The Enhanced X-Ray Radiation Dose SR class: its presentation context is accepted, and its content read."""
    agent = agent_process()
    ds = rdsr.ct_report([rdsr.CTSeries("Chest", target_region="Chest", ctdivol="7.25", dlp="301.5")])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.76"
    assert send([ds], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: stored_count(agent) == 1, 20, what="the report")
    with sqlite3.connect(agent.db_path) as db:
        row = db.execute("SELECT sop_class_uid, source, json_extract(record, '$.events[0].dlp_mGycm') FROM reports").fetchone()
    assert row == ("1.2.840.10008.5.1.4.1.1.88.76", "rdsr", 301.5)


def test_calling_ae_allow_list(agent_process):
    agent = agent_process('[dicom]\nallowed_calling_aes = ["CT_ROOM_1"]\n')
    with pytest.raises(ConnectionError):
        send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port, calling_ae="INTRUDER")
    assert send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port, calling_ae="CT_ROOM_1") == [0]
    (rejected,) = [e for e in agent.log_events() if e["event"] == "association_rejected"]
    assert rejected["calling_ae"] == "INTRUDER" and "Calling AE title not recognised" in rejected["reason"]


def test_malformed_report_is_kept_reported_and_the_scp_goes_on(agent_process):
    agent = agent_process()
    broken = rdsr.ct_report([rdsr.CTSeries("Head")])
    del broken.ContentSequence  # an X-Ray Radiation Dose SR with no content tree: unreadable
    non_dose = pydicom.dcmread(CORPUS / "ESR_non-dose.dcm")
    good = rdsr.ct_report([rdsr.CTSeries("Chest", target_region="Chest")])
    statuses = send([non_dose, broken, good], "127.0.0.1", agent.dicom_port)
    assert statuses == [0x0000, 0x0000, 0x0000]  # each one durable; what it is shows right after
    listing = studies(agent)  # send() returned after the release: everything sent is processed
    assert sorted(f["status"] for f in listing["failed"]) == ["error", "rejected"]
    assert stored_count(agent) == 1
    for f in listing["failed"]:
        assert f["reason"] and pydicom.dcmread(f["path"], force=True)  # kept on disk for inspection
    human = agent.cli("studies").stdout
    assert "could not be stored" in human


def test_several_modalities_at_once(agent_process):
    agent = agent_process()
    results = {}

    def modality(n):
        results[n] = send([rdsr.ct_report([rdsr.CTSeries("Head")]) for _ in range(5)], "127.0.0.1",
                          agent.dicom_port, calling_ae=f"CT{n}")

    threads = [threading.Thread(target=modality, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results[n] == [0] * 5 for n in range(4))
    assert stored_count(agent) == 20


def test_full_disk_answers_out_of_resources_and_keeps_earlier_reports(agent_process):
    # RLIMIT_FSIZE makes every write past 600 kB fail (EFBIG), as a full disk would.
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    agent = agent_process(preexec_fn=limit)
    assert send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port) == [0]
    big = pydicom.dcmread(CORPUS / "RF-RDSR-Philips_Azurion.dcm")  # 1.2 MB: cannot be spooled
    assert send([big], "127.0.0.1", agent.dicom_port) == [0xA700]
    assert send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port) == [0]
    assert stored_count(agent) == 2


def test_quota_reached_answers_out_of_resources(agent_process):
    first = agent_process()  # the store as a first start leaves it; then a quota a few reports above its size
    assert first.stop() == 0
    size = sum(p.stat().st_size for p in first.db_path.parent.glob(first.db_path.name + "*") if p.is_file())
    spool = first.db_path.parent / "spool"
    agent = agent_process(f'[store]\npath = "{first.db_path}"\nspool_dir = "{spool}"\n'
                          f"quota_mb = {(size + 150_000) / (1 << 20):.3f}\n", name="quota")
    assert echo("127.0.0.1", agent.dicom_port) == 0
    statuses = send([rdsr.ct_report([rdsr.CTSeries("Head")]) for _ in range(60)], "127.0.0.1", agent.dicom_port)
    assert statuses[0] == 0 and statuses[-1] == 0xA700
    assert stored_count(first) == statuses.count(0)  # (the store is the first agent's)
    assert statuses.count(0xA700) > 1
    # one error line for the episode, not one per refused object (a retrying modality filled the journal)
    assert [e["level"] for e in agent.log_events() if e["event"] == "store_quota_reached"] == ["error"]
    # a modality's "test connection" now says what a C-STORE would meet: processing failure, not success
    assert echo("127.0.0.1", agent.dicom_port) == 0x0110


def test_sigterm_stops_cleanly_and_logs_hold_no_patient_identity(agent_process):
    agent = agent_process()
    patient = rdsr.Patient(name="Doe^Jane^Q", id="MRN-123456", birth_date="19610203")
    send([rdsr.ct_report([rdsr.CTSeries("Head")], patient=patient)], "127.0.0.1", agent.dicom_port)
    assert agent.stop(signal.SIGTERM) == 0
    text = agent.log_text()
    assert '"agent_stopped"' in text
    for secret in ("Doe", "Jane", "MRN-123456", "19610203"):
        assert secret not in text
    for event in agent.log_events():
        assert {"event", "level", "timestamp"} <= set(event)


def test_malformed_patient_attributes_are_not_quoted_into_the_logs(agent_process):
    """pydicom's validation warnings quote the offending value; a patient's must never reach the log."""
    agent = agent_process()
    with pytest.warns(UserWarning):  # pydicom itself warns about the values while the test builds them
        patient = rdsr.Patient(name="Ñoño^Malformed^Q^R^S^T", id="MRN-ÄÖ-" + "7" * 70, birth_date="1961ä345")
        ds = rdsr.ct_report([rdsr.CTSeries("Head")], patient=patient)
        ds.OtherPatientIDs = ["OTHER-ÄÖ-" + "8" * 70, "OTHER-2"]
    ds.SpecificCharacterSet = "ISO_IR 100"
    assert send([ds], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: '"report_stored"' in agent.log_text(), 20)
    assert agent.stop(signal.SIGTERM) == 0
    text = agent.log_text()  # stdout and stderr of the agent: what the journal would hold
    for secret in ("Malformed", "Ñoño", "MRN-", "OTHER-", "7" * 20, "8" * 20):
        assert secret not in text
    # the birth date's year in any quoting, but not inside a longer number (a free port such as 51961)
    assert not re.search(r"(?<![\d.])1961(?![\d.])", text)
    for line in text.splitlines():  # pydicom's warnings too are JSON events, not raw lines on stderr
        assert json.loads(line)["level"]
    assert any(e["logger"] == "pydicom" and "exceeds the maximum length" in e["event"] for e in agent.log_events())


def test_a_sender_that_stops_in_the_middle_of_a_message_frees_its_slot_after_the_network_timeout(agent_process):
    """Power lost at the modality in the middle of a C-STORE: no more bytes, no FIN.  After
    network_timeout_s the connection is closed and the agent's only association slot is free again."""
    import struct
    import time

    from pynetdicom import AE

    agent = agent_process("[dicom]\nmax_associations = 1\nnetwork_timeout_s = 2\n")
    ae = AE(ae_title="STALLED")
    ae.add_requested_context("1.2.840.10008.1.1")
    stalled = ae.associate("127.0.0.1", agent.dicom_port, ae_title="ALARA_EDGE")
    assert stalled.is_established
    stalled.dul.socket.socket.sendall(b"\x04\x00" + struct.pack(">I", 1000) + b"\x00" * 10)  # 10 of 1000 bytes
    with pytest.raises(ConnectionError):  # the one slot is taken: rejected, local limit exceeded
        echo("127.0.0.1", agent.dicom_port)
    # (logged on EVT_REJECTED, which pynetdicom triggers once the rejection is sent: it may come a moment later)
    wait_for(lambda: any(e["event"] == "association_rejected" and e["reason"] == "Local limit exceeded"
                         for e in agent.log_events()), 10, what="the rejection's log line")
    time.sleep(4)
    assert echo("127.0.0.1", agent.dicom_port) == 0
    stalled.abort()


def test_the_simulated_modality_sends_a_folder_that_also_holds_a_readme(agent_process, tmp_path):
    # `python -m simulator.modality FOLDER` on a corpus folder (it has a README.md) sends the DICOM files
    agent = agent_process()
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "README.md").write_text("# what these files are\n")
    for name in ("CT-RDSR-Siemens-Multi-1.dcm", "RF-RDSR-Siemens-Zee.dcm"):
        (folder / name).write_bytes((CORPUS / name).read_bytes())
    done = subprocess.run([sys.executable, "-m", "simulator.modality", "--port", str(agent.dicom_port), str(folder)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\t0x0000") == 2 and "README.md\tnot DICOM, not sent" in done.stderr
    assert stored_count(agent) == 2


def test_a_modality_retrying_a_refused_association_and_probes_sending_junk_log_one_clear_line_not_one_per_try(
        agent_process):
    import os
    import socket
    import ssl
    import time

    agent = agent_process('[dicom]\nallowed_calling_aes = ["CT_ROOM_1"]\nacse_timeout_s = 5\n')
    for _ in range(10):  # a modality with the wrong AE title, retrying
        with pytest.raises(ConnectionError):
            send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port, calling_ae="INTRUDER")
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    for n in range(6):  # a modality set up for TLS on the plain port, and a scanner sending junk
        with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2) as s:
            if n % 2:
                s.sendall(os.urandom(64))
            else:
                with pytest.raises((OSError, ssl.SSLError)):
                    tls.wrap_socket(s, server_hostname="agent")
    time.sleep(1)
    events = agent.log_events()
    rejected = [e for e in events if e["event"] == "association_rejected"]
    assert len(rejected) == 1 and rejected[0]["calling_ae"] == "INTRUDER" and rejected[0]["times"] == 1
    (unreadable,) = [e for e in events if e["event"] == "dicom_unreadable_data"]
    assert unreadable["peer"].startswith("127.0.0.1:") and "TLS" in unreadable["hint"]
    assert not [e for e in events if e.get("logger", "").startswith("pynetdicom")]


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith(field + ":")).split()[1])


def _secondary_capture(pixel_bytes: int, transfer_syntax=pydicom.uid.ExplicitVRLittleEndian):
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.Modality = pydicom.uid.generate_uid(), "OT"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    if pixel_bytes:
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 4096, 4096, 1, 8
        ds.NumberOfFrames = pixel_bytes // (4096 * 4096)
        ds.PixelData = bytes(pixel_bytes)
    return ds


def test_a_deflate_bomb_is_kept_as_an_error_without_inflating_it_and_the_scp_goes_on(agent_process):
    # 1.5 MB deflated that inflated to 1.5 GB took the agent to 6.4 GB: a 1-4 GB box was killed
    agent = agent_process()
    bomb = _secondary_capture(0, pydicom.uid.DeflatedExplicitVRLittleEndian)
    bomb.add_new(0x00091010, "OB", bytes(160 << 20))  # 160 MiB of zeros: 160 kB deflated, beyond the 64 MiB limit
    before = _rss_kib(agent.proc.pid, "VmHWM")
    assert send([bomb, rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port) == [0, 0]
    del bomb
    assert _rss_kib(agent.proc.pid, "VmHWM") - before < 320 << 10  # the 64 MiB and copies, not 4 x 160 MiB
    (error,) = studies(agent)["failed"]
    assert error["status"] == "error" and "deflated dataset inflates beyond 64 MiB" in error["reason"]
    assert stored_count(agent) == 1  # the report sent after it


def test_an_idle_agent_does_not_hold_the_last_large_object_it_received(agent_process):
    agent = agent_process()
    assert send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port) == [0]
    before = _rss_kib(agent.proc.pid)
    assert send([_secondary_capture(96 << 20)], "127.0.0.1", agent.dicom_port) == [0]  # processed once released
    assert studies(agent)["failed"][0]["status"] == "rejected"  # no dose in its header: kept for inspection
    assert _rss_kib(agent.proc.pid) - before < 48 << 10  # the worker held all 96 MiB until the next object


def _study_object(sop_class: str, modality: str, study_uid: str, pixels: bool = False):
    """A non-dose object of a forwarded study (a presentation state, a key object selection, an enhanced image)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, study_uid, generate_uid()
    if pixels:
        ds.Rows = ds.Columns = 256
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel, ds.PhotometricInterpretation = 15, 0, 1, "MONOCHROME2"
        ds.NumberOfFrames = 4
        ds.PixelData = bytes(256 * 256 * 2 * 4)
    return ds


def test_a_whole_study_forwarded_by_a_router_is_answered_success_object_by_object(agent_process):
    """A PACS forwarding a whole CT study sends its presentation state, key object selection and enhanced
    images with the slices and the RDSR. Their SOP classes were not accepted: the router's transfer failed
    (storescu stopped before the RDSR) and was retried for ever. Each is now answered Success and set aside."""
    agent = agent_process()
    rdsr_ds = pydicom.dcmread(CORPUS / "CT-RDSR-Toshiba_DoseCheck.dcm")
    study_uid = rdsr_ds.StudyInstanceUID
    others = [_study_object("1.2.840.10008.5.1.4.1.1.11.1", "PR", study_uid),  # Grayscale Softcopy Presentation State
              _study_object("1.2.840.10008.5.1.4.1.1.88.59", "KO", study_uid),  # Key Object Selection Document
              _study_object("1.2.840.10008.5.1.4.1.1.2.1", "CT", study_uid, pixels=True)]  # Enhanced CT Image
    assert send(others + [rdsr_ds], "127.0.0.1", agent.dicom_port, calling_ae="ROUTER") == [0, 0, 0, 0]
    listed = studies(agent)
    (study,) = listed["studies"]
    assert study["study_instance_uid"] == study_uid and study["totals"]["ct_dlp_total_mGycm"] == 502.4
    assert listed["failed_count"] == 3
    assert all(f["status"] == "rejected" and Path(f["path"]).stat().st_size < 4096 for f in listed["failed"])


def test_a_port_probe_takes_no_slot_and_does_not_hold_up_the_stop(agent_process):
    """Monitoring checks the DICOM port by opening a TCP connection and closing it.  Each probe is over
    at once: with one association slot a modality is served right after a run of probes, and the agent
    stops within a second or two, not after the ACSE timeout (30 s by default)."""
    import socket
    import time

    agent = agent_process("[dicom]\nmax_associations = 1\n")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2):
            pass
    time.sleep(0.3)
    assert echo("127.0.0.1", agent.dicom_port) == 0
    with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2):
        pass
    _stops_at_once_with_no_association_to_abort(agent)


def test_a_probe_that_sends_bytes_that_are_not_dicom_takes_no_slot_and_does_not_hold_up_the_stop(agent_process):
    """An HTTP health check or a scanner's service probe sends a few bytes that are no PDU and closes:
    pynetdicom answers with an A-ABORT and the connection is gone.  Its slot is free at once (one slot:
    a modality is served right after) and the agent stops within seconds, not after the ACSE timeout."""
    import os
    import socket
    import time

    agent = agent_process("[dicom]\nmax_associations = 1\n")
    for probe in (b"GET / HTTP/1.0\r\n\r\n", os.urandom(64), b"\x16\x03\x01\x00\xa5\x01"):
        with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2) as s:
            s.sendall(probe)
        time.sleep(0.3)
        assert echo("127.0.0.1", agent.dicom_port) == 0
    with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    _stops_at_once_with_no_association_to_abort(agent)


def _stops_at_once_with_no_association_to_abort(agent) -> None:
    """The last probe's connection is gone (no slot held, nothing to abort): the agent stops within seconds."""
    import time

    time.sleep(0.3)
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 5
    assert [e for e in agent.log_events() if e["event"] == "dicom_stopped"][0]["aborted_associations"] == 0


def test_a_forwarded_siemens_study_with_its_private_csa_objects_is_answered_success_object_by_object(agent_process):
    """Siemens CT and MR studies hold CSA Non-Image objects (a private Storage SOP class).  A router forwarding
    the study proposes its class; the agent rejected that presentation context, so the router's transfer of
    the study failed and it retried it for ever.  Now it is answered Success and set aside as the others are."""
    agent = agent_process()
    rdsr_ds = pydicom.dcmread(CORPUS / "CT-RDSR-Toshiba_DoseCheck.dcm")
    csa = _study_object("1.3.12.2.1107.5.9.1", "CT", rdsr_ds.StudyInstanceUID)  # Siemens CSA Non-Image Storage
    assert send([csa, rdsr_ds], "127.0.0.1", agent.dicom_port, calling_ae="ROUTER") == [0, 0]
    listed = studies(agent)
    assert [s["study_instance_uid"] for s in listed["studies"]] == [rdsr_ds.StudyInstanceUID]
    assert [f["status"] for f in listed["failed"]] == ["rejected"]  # kept for inspection, as any non-dose object


def _zee_re_encoded():
    """RF-RDSR-Siemens-Zee as a router may pass it on: Implicit VR Little Endian, its Arabic and Latin text
    in ISO 2022 character sets instead of UTF-8. Other bytes, the same report."""
    ds = pydicom.dcmread(CORPUS / "RF-RDSR-Siemens-Zee.dcm")
    ds.decode()
    ds.SpecificCharacterSet = ["ISO 2022 IR 100", "ISO 2022 IR 127"]
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=True, little_endian=True)
    return pydicom.dcmread(io.BytesIO(out.getvalue()))


def _zee_with_one_dap_corrected():
    """RF-RDSR-Siemens-Zee re-sent under its SOP Instance UID with the first event's DAP changed."""
    ds = pydicom.dcmread(CORPUS / "RF-RDSR-Siemens-Zee.dcm")
    event = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "113706")
    dap = next(i for i in event.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "122130")
    dap.MeasuredValueSequence[0].NumericValue = "0.0002"
    return ds


def test_a_stored_sop_instance_sent_again_with_other_dose_content_is_kept_aside_and_said(agent_process):
    """A modality or router re-using a SOP Instance UID for other content: the first report stays the record and
    the totals do not change, but the other object is kept in failed/ with what differs, a warning and a line in
    `studies`; the same report re-encoded (transfer syntax, character set) stays a quiet duplicate."""
    agent = agent_process()
    original = pydicom.dcmread(CORPUS / "RF-RDSR-Siemens-Zee.dcm")
    assert send([original], "127.0.0.1", agent.dicom_port) == [0]
    before = studies(agent)
    assert before["failed"] == [] and len(before["studies"]) == 1

    assert send([_zee_re_encoded()], "127.0.0.1", agent.dicom_port) == [0]
    assert studies(agent) == before  # nothing kept, nothing counted
    adjusted = pydicom.dcmread(CORPUS / "RF-RDSR-Siemens-Zee_adjusted.dcm")  # the same UID, moved to another study
    assert adjusted.SOPInstanceUID == original.SOPInstanceUID
    assert send([adjusted, _zee_with_one_dap_corrected(), adjusted], "127.0.0.1", agent.dicom_port) == [0, 0, 0]

    after = studies(agent)
    assert after["studies"] == before["studies"]  # the first values stay the record, counted once
    assert after["failed_count"] == 2
    dap, moved = after["failed"]
    assert {dap["status"], moved["status"]} == {"duplicate_differs"}
    assert "study_instance_uid" in moved["reason"] and "study datetime" in moved["reason"]
    assert "events.dap_Gym2 (1 of 8)" in dap["reason"] and "totals" not in dap["reason"]
    for kept, sent in ((moved, adjusted), (dap, _zee_with_one_dap_corrected())):
        assert kept["reason"].startswith("SOP Instance UID already stored with different dose content")
        assert "first stored values stay the record" in kept["reason"]
        on_disk = pydicom.dcmread(kept["path"])
        assert Path(kept["path"]).parent.name == "failed" and on_disk.StudyInstanceUID == sent.StudyInstanceUID
    human = agent.cli("studies").stdout
    assert "could not be stored" in human and "duplicate_differs" in human and "different dose content" in human

    warned = [e for e in agent.log_events() if e.get("event") == "report_duplicate_differs"]
    assert len(warned) == 2 and {e["level"] for e in warned} == {"warning"}
    assert all(e["sop_instance_uid"] == original.SOPInstanceUID for e in warned)
    assert [e["event"] for e in agent.log_events() if e.get("event", "").startswith("report_duplicate")] == [
        "report_duplicate", "report_duplicate_differs", "report_duplicate_differs", "report_duplicate_differs_again"]
    for identity in ("098765", "آدم", "19160512", "1916-05-12"):  # the patient's id, name and birth date
        assert identity not in agent.log_text() and identity not in json.dumps(after["failed"], ensure_ascii=False)


SMALL_LIMIT = "[dicom]\nheader_only_above_mb = 1\n"  # the default is 64: the objects below stay a few MB


def _large_mammogram():
    """A real mammography header (dose in it) with 3 MiB of pixel data."""
    ds = pydicom.dcmread(CORPUS / "MG-Im-GE-SenDS-scaled.dcm")
    ds.Rows, ds.Columns = 1536, 1024
    ds.PixelData = bytes(1536 * 1024 * 2)
    return ds


def _encoded(ds) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_an_object_over_the_size_limit_is_kept_without_its_pixel_data_and_its_dose_read_as_from_the_whole(
        agent_process):
    """A 1-3 GB tomosynthesis object did not fit an inbox row (SQLite's maximum length): 0xA700, and the router
    retried it for ever, with every dose report behind it.  Over [dicom] header_only_above_mb its pixel data is
    left out as it is received: Success, the header's dose read, and only the header kept."""
    from agent.extract import extract_dataset
    from agent.extract.reader import read_dataset

    agent = agent_process(SMALL_LIMIT)
    mg = _large_mammogram()
    whole = extract_dataset(read_dataset(_encoded(mg))).to_dict()
    assert send([mg], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: stored_count(agent) == 1, 20, what="the mammogram's report")
    with sqlite3.connect(agent.db_path) as db:
        record, path, size = db.execute("SELECT r.record, c.path, c.size_bytes FROM reports r "
                                        "JOIN receipts c ON c.id = r.receipt_id").fetchone()
    record = json.loads(record)
    assert record["events"] == whole["events"] and record["totals"] == whole["totals"]
    assert record["events"][0]["agd_mGy"] == 1.373 and record["events"][0]["entrance_exposure_at_rp_mGy"] == 5.071
    kept = pydicom.dcmread(path)
    assert "PixelData" not in kept and kept.SOPInstanceUID == mg.SOPInstanceUID
    assert Path(path).stat().st_size == size < 64 << 10  # the spool holds the header, not 3 MiB
    (line,) = [e for e in agent.log_events() if e.get("event") == "pixel_data_left_out"]
    assert line["received_bytes"] > 3 << 20 and line["kept_bytes"] == size

    # the same object again is recognised as the report stored
    assert send([mg], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: any(e.get("event") == "report_duplicate" for e in agent.log_events()), 20, what="the duplicate")
    assert stored_count(agent) == 1 and studies(agent)["failed"] == []


def test_a_non_dose_image_over_the_size_limit_is_kept_header_only_as_rejected_saying_so(agent_process):
    agent = agent_process(SMALL_LIMIT)
    ct = _study_object("1.2.840.10008.5.1.4.1.1.2", "CT", pydicom.uid.generate_uid(), pixels=True)
    ct.Rows, ct.Columns, ct.NumberOfFrames = 1024, 1536, 1
    ct.PixelData = bytes(1024 * 1536 * 2)
    assert send([ct, ct], "127.0.0.1", agent.dicom_port) == [0, 0]
    wait_for(lambda: any(e.get("event") == "report_rejected_again" for e in agent.log_events()), 20,
             what="the image sent again")
    listed = studies(agent)
    (rejected,) = listed["failed"]  # the same image again is kept once
    assert rejected["status"] == "rejected"
    assert re.search(r"its pixel data was left out as it was received \([\d,]+ of [\d,]+ bytes", rejected["reason"])
    assert "PixelData" not in pydicom.dcmread(rejected["path"]) and Path(rejected["path"]).stat().st_size < 4096


def test_a_dose_report_over_the_size_limit_is_kept_whole_and_read(agent_process):
    agent = agent_process(SMALL_LIMIT)
    report = rdsr.ct_report([rdsr.CTSeries("Chest", ctdivol="7.25", dlp="301.5") for _ in range(300)])
    size = len(_encoded(report))
    assert size > 1 << 20  # a 300-event report, over the limit
    assert send([report], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: stored_count(agent) == 1, 60, what="the report")
    with sqlite3.connect(agent.db_path) as db:
        events, path = db.execute("SELECT json_array_length(r.record, '$.events'), c.path FROM reports r "
                                  "JOIN receipts c ON c.id = r.receipt_id").fetchone()
    assert events == 300 and Path(path).stat().st_size >= size - 1024  # (the meta header is the agent's)
    assert not any(e.get("event") == "pixel_data_left_out" for e in agent.log_events())


def test_the_default_size_limit_fits_an_inbox_row(tmp_path):
    """Whatever is cut to its header must fit: the default stays well below SQLite's maximum length."""
    from agent.config import DicomConfig
    from agent.store.inbox import Inbox

    inbox = Inbox(tmp_path / "x-inbox.sqlite")
    try:
        maximum = inbox._conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    finally:
        inbox.close()
    assert DicomConfig().header_only_above_mb * (1 << 20) * 4 < maximum


def test_an_object_too_large_for_the_inbox_whose_pixel_data_cannot_be_cut_is_refused_for_good(tmp_path):
    """A deflated object (its pixel data cannot be cut off before it is inflated) larger than SQLite's maximum
    length was answered 0xA700 Out of Resources: the router retried it for ever.  It is answered 0xC000 now,
    with a clear line, and what follows it is taken.  SQLite's limit is lowered to 2 MB for a 3 MB object."""
    import os

    from agent.config import DicomConfig
    from agent.pipeline import Pipeline
    from agent.sources.dicom.scp import DicomSource
    from agent.store import Store

    store = Store.open(tmp_path / "agent.sqlite")
    pipeline = Pipeline(store, tmp_path / "spool", "room-1")
    scp = DicomSource(DicomConfig(bind="127.0.0.1", port=0, header_only_above_mb=1), pipeline)
    pipeline.start()
    pipeline.inbox._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2_000_000)
    scp.start()
    try:
        deflated = _large_mammogram()
        deflated.PixelData = os.urandom(len(deflated.PixelData))  # (zeros would deflate to nothing)
        deflated.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
        cut = _large_mammogram()  # the same size, not deflated: cut to its header, it fits
        cut.SOPInstanceUID = pydicom.uid.generate_uid()
        with capture_logs() as logs:
            statuses = send([deflated, cut, rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", scp.port)
    finally:
        scp.stop()
        pipeline.stop()
    assert statuses == [0xC000, 0, 0]
    (line,) = [e for e in logs if e["event"] == "object_too_large"]
    assert line["log_level"] == "error" and line["size_bytes"] > 3 << 20 and "refused for good" in line["hint"]
    assert store.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 2
    store.close()
