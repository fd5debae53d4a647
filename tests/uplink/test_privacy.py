"""Privacy before anything leaves the box: pseudonyms, modes, and names that slip into free text."""
from __future__ import annotations

import hashlib
import hmac
import json
import stat

import pytest

from agent.config import PrivacyConfig
from agent.extract.record import PHI
from agent.uplink.privacy import Privacy, SiteSecret

# the broker on 127.0.0.1:1883 with one client id: these run on one xdist worker, one after the other
pytestmark = pytest.mark.xdist_group("system-broker")

PATIENT = PHI(patient_id="PID-0042", patient_name="Doe^Johanna^^Dr", birth_date="19610417")


def _privacy(tmp_path, mode="pseudonymise", secret="site-secret") -> Privacy:
    return Privacy(PrivacyConfig(patient_id=mode, secret_file=tmp_path / secret))


def test_secret_file_is_created_private_on_first_use_and_reused(tmp_path):
    first = _privacy(tmp_path)
    path = tmp_path / "site-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    again = _privacy(tmp_path)
    assert first.identity(PATIENT) == again.identity(PATIENT)


def test_pseudonym_is_keyed_hmac_stable_per_patient_and_differs_per_secret(tmp_path):
    (tmp_path / "a").write_text("00" * 16 + "11" * 16 + "\n")
    a = _privacy(tmp_path, secret="a")
    expected = hmac.new(bytes.fromhex("00" * 16 + "11" * 16), b"PID-0042", hashlib.sha256).hexdigest()
    assert a.identity(PATIENT)["pseudonym"] == expected
    assert a.identity(PHI(patient_id=" PID-0042 "))["pseudonym"] == expected
    assert a.identity(PHI(patient_id="PID-0043"))["pseudonym"] != expected
    b = _privacy(tmp_path, secret="b")
    assert b.identity(PATIENT)["pseudonym"] != expected
    assert a.identity(PATIENT)["pseudonym_key"] != b.identity(PATIENT)["pseudonym_key"]


def test_modes_omit_and_include(tmp_path):
    assert _privacy(tmp_path, "omit").identity(PATIENT) == {}
    assert _privacy(tmp_path, "include").identity(PATIENT) == {"id": "PID-0042"}
    assert _privacy(tmp_path).identity(PHI()) == {}


def test_short_secret_is_refused(tmp_path):
    (tmp_path / "weak").write_text("abcd")
    try:
        SiteSecret.load(tmp_path / "weak")
    except ValueError as exc:
        assert "16 bytes" in str(exc)
    else:
        raise AssertionError("a 2-byte secret was accepted")


def test_scrub_removes_name_birth_date_and_id_copied_into_free_text(tmp_path):
    body = {
        "study": {"description": "CT THORAX johanna doe", "accession_number": "A77"},
        "device": {"station_name": "CT1", "institution_name": "General"},
        "warnings": ["birth date 1961-04-17 found in comment", "fine"],
        "events": [{"protocol": "Scan for PID-0042", "irradiation_event_uid": "1.2.19610417.3"}],
    }
    changed = _privacy(tmp_path).scrub(body, PATIENT)
    text = json.dumps(body)
    assert "johanna" not in text.lower() and "1961-04-17" not in text and "PID-0042" not in text
    assert body["events"][0]["irradiation_event_uid"] == "1.2.19610417.3"  # identifiers are not free text
    assert body["device"] == {"station_name": "CT1", "institution_name": "General"}
    assert sorted(changed) == ["events.0.protocol", "study.description", "warnings.0"]


def test_the_accession_number_is_treated_like_the_patient_id(tmp_path):
    """It finds the patient in the RIS: pseudonymised by default, dropped with omit, as is with include."""
    study = lambda: {"accession_number": "ACC-778899", "description": "CT Head"}  # noqa: E731
    pseudonymised, omitted, included = study(), study(), study()
    _privacy(tmp_path).accession(pseudonymised)
    _privacy(tmp_path, "omit").accession(omitted)
    _privacy(tmp_path, "include").accession(included)
    assert "accession_number" not in pseudonymised and len(pseudonymised["accession_pseudonym"]) == 64
    assert pseudonymised["accession_pseudonym"] != _privacy(tmp_path).identity(PHI(patient_id="ACC-778899"))["pseudonym"]
    assert omitted == {"description": "CT Head"}
    assert included == {"accession_number": "ACC-778899", "description": "CT Head"}
    again = study()
    _privacy(tmp_path).accession(again)
    assert again == pseudonymised  # the same exam links across stations of the site


def test_a_short_secret_is_one_clear_line_from_check_config_import_and_run(tmp_path):
    """Not a traceback (import printed 25 lines of one), and check-config no longer says ok."""
    from tests.conftest import CORPUS, AgentProcess, run_agent

    agent = AgentProcess(tmp_path / "a", f'[privacy]\nsecret_file = "{tmp_path / "weak"}"\n')
    (tmp_path / "weak").write_text("abcd")
    checked = run_agent("check-config", str(agent.config_path))
    assert checked.returncode == 1 and "privacy.secret_file: site secret" in checked.stderr and "16 bytes" in checked.stderr
    imported = agent.cli("import", str(CORPUS / "CT-RDSR-Siemens-Multi-1.dcm"))
    assert imported.returncode == 2 and "Traceback" not in imported.stderr
    assert imported.stderr.strip().splitlines() == [f"alara-edge import: cannot start: site secret {tmp_path / 'weak'}: "
                                                    "it must hold at least 16 bytes (remove the file and a new one is made "
                                                    "at the next start; then copy it to the site's other stations)"]
    ran = run_agent("run", "-c", str(agent.config_path), cwd=agent.workdir, timeout=60)
    assert ran.returncode == 1 and "Traceback" not in ran.stdout + ran.stderr and "16 bytes" in ran.stdout


def test_a_store_restored_without_its_site_secret_says_so_at_start(tmp_path, store):
    """Restored from a backup without the ``site-secret`` file, the agent makes a new one: every patient
    would get a new pseudonym at the central site. The start says so as an error, not only as a new file."""
    from structlog.testing import capture_logs

    from agent.uplink import ReportOutboxStage
    from tests.uplink.conftest import make_config
    from tests.uplink.reports import ct_report, ingest

    cfg = make_config(tmp_path, 1883)
    stage = ReportOutboxStage(cfg)
    with store.transaction() as tx:
        stage(tx, ingest(tx, ct_report(n=0, study="1.2.826.0.1.3680043.10.1.0")))
    assert stage.check_site_secret(store.db)  # the same secret: nothing to say
    secret = stage.privacy.secret.key_id
    for path in tmp_path.rglob("site-secret"):
        path.unlink()  # the backup did not hold it: a new one is made at the next start
    with capture_logs() as logs:
        again = ReportOutboxStage(cfg)
        assert not again.check_site_secret(store.db)
    (line,) = [e for e in logs if e["event"] == "site_secret_changed"]
    assert line["log_level"] == "error" and line["previous_key"] == secret and "restore the site-secret" in line["hint"]


def _with_other_ids(tmp_path):
    """A real CT RDSR whose header names the patient's other ids (a national number in the sequence, an old
    number in the retired attribute), copied by the modality into the study description and a protocol."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from tests.conftest import CORPUS

    ds = pydicom.dcmread(CORPUS / "CT-RDSR-Toshiba_DoseCheck.dcm")
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = "9434765919", "NHS", "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.OtherPatientIDs = "OLD-55123"
    ds.StudyDescription = "CT Thorax NHS 943 476 5919"
    protocols = [it for it in ds.ContentSequence if it.get("ValueType") == "CONTAINER"
                 for child in it.get("ContentSequence", []) if child.get("ValueType") == "TEXT"
                 and child.ConceptNameCodeSequence[0].CodeValue == "125203"]
    protocols[0].TextValue = "Liver OLD-55123"
    path = tmp_path / "other-ids.dcm"
    ds.save_as(path, enforce_file_format=True)
    return ds, path


def test_the_patients_other_ids_copied_into_free_text_do_not_leave_the_box(tmp_path):
    """Other Patient IDs (a national number, a previous hospital's) identify the patient as the id does: a modality
    that copied one into the study description or a protocol had it published to the broker and printed by
    ``extract``. Now the value is [removed] there, in both places, and the rest of the report is as before."""
    import pydicom

    from agent.sources.dicom import scu
    from tests.conftest import AgentProcess, run_agent, wait_for
    from tests.uplink.broker import Mosquitto
    from tests.uplink.tap import Tap

    ds, path = _with_other_ids(tmp_path)
    broker = Mosquitto(tmp_path / "broker").start()
    tap = Tap(broker.port, topic="#")
    agent = AgentProcess(tmp_path / "agent", f"[mqtt]\nport = {broker.port}\nreconnect_min_s = 0.1\n").start()
    try:
        assert scu.send([pydicom.dcmread(path)], "127.0.0.1", agent.dicom_port) == [0]
        (seen,) = wait_for(lambda: tap.of_kind("report"), what="the report at the broker")
    finally:
        agent.stop()
        tap.close()
        broker.stop()
    body = seen.json["body"] if "body" in seen.json else seen.json
    published = seen.payload.decode()
    for value in ("9434765919", "943 476 5919", "OLD-55123", "55123"):
        assert value not in published
    assert body["study"]["description"] == "[removed]"
    assert "pseudonym" in body["patient"] and body["totals"]["ct_dlp_total_mGycm"] > 0

    printed = run_agent("extract", str(path)).stdout
    assert "943 476 5919" not in printed and "OLD-55123" not in printed
    with_phi = json.loads(run_agent("extract", "--include-phi", str(path)).stdout)["report"]
    assert with_phi["phi"]["other_patient_ids"] == ["OLD-55123", "9434765919"]
    assert with_phi["study"]["description"] == ds.StudyDescription


def test_the_reason_an_object_was_set_aside_does_not_quote_the_patient(tmp_path):
    """A report set aside is logged, listed by ``studies`` and shown on the console with its reason; a reason that
    quotes the object (a non-dose SR's document title, made up by the modality from the patient's name and id)
    put the patient's name and id in the agent's log. They are [removed] there now; the rest of the reason stays."""

    from agent.sources.dicom import scu
    from simulator import rdsr
    from tests.conftest import AgentProcess, run_agent, wait_for

    ds = rdsr.ct_report([rdsr.CTSeries("Head")], patient=rdsr.Patient(name="Zbigniewska^Haruko", id="QX778899"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    ds.ConceptNameCodeSequence[0].CodeValue = "QX778899"
    ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "99LOCAL"
    ds.ConceptNameCodeSequence[0].CodeMeaning = "Befund Zbigniewska Haruko"
    agent = AgentProcess(tmp_path / "agent", "[mqtt]\nenabled = false\n").start()
    try:
        assert scu.send([ds], "127.0.0.1", agent.dicom_port) == [0]
        (line,) = wait_for(lambda: [e for e in agent.log_events() if e.get("event") == "report_rejected"],
                           what="the object set aside")
        listed = agent.cli("studies").stdout
    finally:
        agent.stop()
    assert "not a radiation dose report: document title 'Befund [removed]' (99LOCAL [removed])" in line["reason"], line
    for text in (agent.log_text(), listed):
        assert "Zbigniewska" not in text and "Haruko" not in text and "QX778899" not in text
    assert "not a radiation dose report" in listed
    # and `alara-edge extract` on the same file says so without the patient too, unless asked
    path = tmp_path / "befund.dcm"
    ds.save_as(path, enforce_file_format=True)
    (out,) = [json.loads(line) for line in run_agent("extract", str(path)).stdout.splitlines()]
    assert out["status"] == "rejected" and "Befund [removed]" in out["reason"] and "QX778899" not in out["reason"]
    (out,) = [json.loads(line) for line in run_agent("extract", "--include-phi", str(path)).stdout.splitlines()]
    assert "Befund Zbigniewska Haruko" in out["reason"]


def _published(tmp_path, datasets, config=""):
    """``datasets`` sent over DICOM to a running agent; the report bodies a tap on the broker saw, and the agent
    (stopped: its CLI and log can still be read)."""
    from agent.sources.dicom import scu
    from tests.conftest import AgentProcess, wait_for
    from tests.uplink.broker import Mosquitto
    from tests.uplink.tap import Tap

    broker = Mosquitto(tmp_path / "broker").start()
    tap = Tap(broker.port, topic="alara/#")
    agent = AgentProcess(tmp_path / "agent", f"[mqtt]\nport = {broker.port}\nreconnect_min_s = 0.1\n{config}")
    try:
        agent.start()
        assert scu.send(datasets, "127.0.0.1", agent.dicom_port) == [0] * len(datasets)
        seen = wait_for(lambda: len(tap.of_kind("report")) == len(datasets) and tap.of_kind("report"),
                        what="the reports at the broker")
    finally:
        agent.stop()
        tap.close()
        broker.stop()
    return [m.json["body"] if "body" in m.json else m.json for m in seen], agent


def test_a_decimal_value_holding_the_ids_digits_is_not_taken_for_the_id(tmp_path):
    """Patient id 123456: a description quoting the previous exam's DLP 1234.56 reached the central site as
    [removed] (a dot anywhere between the id's digits was taken for the id written with a separator), and so
    did a protocol with a CTDIvol of 0.123456. The id itself, alone or with a space or a dash, is still removed."""
    from simulator import rdsr

    patient = rdsr.Patient(name="Zbigniewska^Haruko", id="123456")
    ds = rdsr.ct_report([rdsr.CTSeries("Thorax CTDIvol 0.123456"), rdsr.CTSeries("Abdomen pt 123-456")],
                        patient=patient, description="CT Thorax, previous DLP 1234.56 mGycm")
    (body,), _ = _published(tmp_path, [ds])
    assert body["study"]["description"] == "CT Thorax, previous DLP 1234.56 mGycm"
    protocols = [e.get("protocol") for e in body["events"]]
    assert "Thorax CTDIvol 0.123456" in protocols
    assert "123-456" not in json.dumps(body) and "[removed]" in protocols[1]


def test_a_two_letter_name_part_is_removed_only_as_a_word_of_its_own(tmp_path):
    """Patient Fu^Al: "CT Fuß rechts" reached the central site as [removed] (the "Fu" of "Fuß" was taken for the
    name: ß was not a letter to the pattern), and so did a protocol "Knie als Vergleich" ("als" as the plural of
    "Al"). Now a one- or two-letter part is found only as a word of its own; the name itself is still removed."""
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Knie als Vergleich"), rdsr.CTSeries("Fu Al repeat")],
                        patient=rdsr.Patient(name="Fu^Al", id="QX778899"), description="CT Fuß rechts")
    (body,), _ = _published(tmp_path, [ds])
    assert body["study"]["description"] == "CT Fuß rechts"
    protocols = [e.get("protocol") for e in body["events"]]
    assert protocols[0] == "Knie als Vergleich" and "Fu Al" not in protocols[1]


def test_the_patients_other_ids_are_not_shown_by_studies_nor_sent_with_an_acknowledgement(tmp_path):
    """The store kept the patient's name, id and birth date for the local views, not the other ids: a national
    number that the broker never saw was printed by ``studies`` (and shown on the console) in the description,
    and an acknowledgement's note quoting it was queued for the central site as typed. Now both remove it."""
    import sqlite3

    import pydicom

    _, path = _with_other_ids(tmp_path)
    (body,), agent = _published(tmp_path, [pydicom.dcmread(path)])
    assert "5919" not in json.dumps(body)
    listed = agent.cli("studies").stdout
    assert "CT Thorax NHS [removed]" in listed and "5919" not in listed
    (alert, *_) = json.loads(agent.cli("alerts", "--json").stdout)
    acked = agent.cli("ack", str(alert["id"]), "--by", "RT42", "--reason", "other",
                      "--note", "NHS 943 476 5919 large patient")
    assert acked.returncode == 0, acked.stderr
    with sqlite3.connect(agent.db_path) as db:
        (sent,) = [json.loads(b) for (b,) in db.execute("SELECT body FROM outbox WHERE kind = 'ack'")]
    assert sent["note"] == "NHS [removed] large patient"
