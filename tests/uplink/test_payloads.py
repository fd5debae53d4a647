"""What goes on the wire: report bodies, envelopes and MQTT 5 properties, checked against the schemas."""
from __future__ import annotations

import json

from agent.config import Config
from agent.store import outbox
from agent.uplink import ReportOutboxStage
from agent.uplink.payloads import PackedProperties, envelope, publish_properties, user_schema
from tests.uplink.reports import BIRTH, NAME, PID, ct_report, ingest
from tests.uplink.schemas import errors


def _config(tmp_path, mode="pseudonymise") -> Config:
    return Config.model_validate({"privacy": {"patient_id": mode, "secret_file": str(tmp_path / "secret")}})


def _queued_report(store, tmp_path, mode="pseudonymise", report=None):
    stage = ReportOutboxStage(_config(tmp_path, mode))
    report = report or ct_report()
    with store.transaction() as tx:
        stage(tx, ingest(tx, report))
    (row,) = outbox.next_pending(store.db, 0, 10)
    return row


def test_report_row_is_keyed_by_sop_instance_uid_and_keeps_every_digit(store, tmp_path):
    report = ct_report()
    row = _queued_report(store, tmp_path, report=report)
    assert row.event_id == outbox.event_id("report", report.sop_instance_uid)
    body = json.loads(row.body)
    assert [e["dlp_mGycm"] for e in body["events"]] == [301.04701, 301.04701]
    assert body["events"][0]["ssde_mGy"] == 0.30000000000000004
    assert body["study_totals"]["ct_dlp_total_mGycm"] == report.totals.ct_dlp_total_mGycm
    assert body["received_at"] == "2025-03-01T10:20:00.000000Z"


def test_report_body_never_carries_name_or_birth_date_in_any_mode(store, tmp_path):
    for i, mode in enumerate(("pseudonymise", "omit", "include")):
        with store.transaction() as tx:
            tx.execute("DELETE FROM outbox")
        row = _queued_report(store, tmp_path, mode, report=ct_report(n=i, study=f"1.2.3.{i}"))
        assert NAME.split("^")[0] not in row.body and BIRTH not in row.body
        patient = json.loads(row.body)["patient"]
        assert {"pseudonymise": "pseudonym" in patient and PID not in row.body,
                "omit": "pseudonym" not in patient and PID not in row.body,
                "include": patient.get("id") == PID}[mode]
        message = json.loads(envelope(kind="report", event_id=row.event_id, seq=row.seq, site="st-test",
                                      station="ct-01", created=row.created_at, body_json=row.body))
        assert errors(message) == []


def test_envelope_splices_the_body_verbatim_and_validates(store):
    body_json = ('{"type":"procedure","procedure_id":"ct-01:dap-meter:3","station":"ct-01","device":"dap-meter",'
                 '"started_at":"2025-03-01T10:00:00Z","ended_at":null,"start_reason":"dose","end_reason":null,'
                 '"dap_Gym2":0.30000000000000004,"air_kerma_Gy":1e-05,"samples":12}')
    raw = envelope(kind="reading", event_id=outbox.event_id("reading", 1), seq=7, site="st-test", station="ct-01",
                   created="2025-03-01T10:20:00Z", body_json=body_json)
    assert raw.endswith(b',"body":' + body_json.encode() + b"}")
    message = json.loads(raw)
    assert message["seq"] == 7 and message["schema"] == {"name": "alara-edge/reading", "version": 1}
    assert errors(message) == []
    message["body"]["patient_name"] = "X"
    assert errors(message)  # the schemas reject a name at any depth


def test_envelope_is_what_json_dumps_writes_for_any_text():
    for site, station, event_id, store in (("st-test", "ct-01", "reading-" + "f" * 32, "0a" * 16),
                                           ('St "Mary\'s"', "Röntgen\\2\n", "alert-\u2028\x00é中", None)):
        raw = envelope(kind="alert", event_id=event_id, seq=12, site=site, station=station, store=store,
                       created="2025-03-01T10:20:00Z", body_json='{"a":1}', sent="2025-03-01T10:20:00.5Z")
        expected = json.dumps({"schema": {"name": "alara-edge/alert", "version": 1}, "event_id": event_id, "seq": 12,
                               **({"store": store} if store else {}), "site": site, "station": station, "kind": "alert", "created": "2025-03-01T10:20:00Z",
                               "sent": "2025-03-01T10:20:00.5Z", "body": {"a": 1}},
                              separators=(",", ":"), ensure_ascii=False)
        assert raw == expected.encode("utf-8")


def test_packed_properties_are_byte_identical_to_paho_properties():
    for event_id, seq in (("report-" + "a" * 32, 1), ("alert-" + "0" * 32, 123456789), ("é-x", 0)):
        packed = PackedProperties(event_id, user_schema("report"), seq).pack()
        assert packed == publish_properties(event_id, user_schema("report"), seq).pack()


def test_site_secret_defaults_to_beside_the_store(tmp_path):
    cfg = Config.model_validate({"store": {"path": str(tmp_path / "state" / "agent.sqlite")}})
    ReportOutboxStage(cfg)
    assert (tmp_path / "state" / "site-secret").stat().st_mode & 0o777 == 0o600


def test_a_report_whose_uids_break_the_64_character_limit_still_validates(store, tmp_path):
    """Some modalities write UIDs longer than DICOM's 64 characters, or with a letter or a trailing space;
    the agent stores and sends them as the object states them, so the published schema accepts them too
    (a central site validating against it dropped those reports)."""
    study = "1.2.826.0.1.3680043.10.1." + "1234567890" * 5  # 75 characters
    report = ct_report(study=study)
    report.series_instance_uid = "1.2.3.4.A "
    row = _queued_report(store, tmp_path, report=report)
    message = json.loads(envelope(kind="report", event_id=row.event_id, seq=row.seq, site="st-test",
                                  station="ct-01", created=row.created_at, body_json=row.body))
    assert message["body"]["study_instance_uid"] == study
    assert errors(message) == []
