"""Alert records: stable ids, outbox rows, no patient identity, acknowledgement with who/why/when."""
import json

import pytest

from agent.checks import acknowledge, list_alerts
from agent.checks.alerts import AlreadyAcknowledged, UnknownAlert
from agent.extract.record import PHI
from tests.checks.conftest import ct_event, ct_report, rf_report

FIELDS = {"id", "kind", "severity", "station", "rule", "source", "quantity", "value", "threshold", "unit",
          "study_instance_uid", "irradiation_event_uid", "procedure_id", "exam", "message", "raised_at",
          "acknowledged", "ack"}


def test_alert_is_stored_and_queued_in_the_same_transaction_without_patient_identity(checked):
    report = ct_report([ct_event("Head", 85.0, 900.0)])
    report.phi = PHI(patient_id="PID-4711", patient_name="Doe^Jane", birth_date="19700101")
    (alert,) = checked.ingest(report)
    (row,) = checked.outbox("alert")
    body = json.loads(row["body"])
    assert row["event_id"] == alert.id and body == alert.to_dict()
    assert FIELDS <= set(body)
    assert body["acknowledged"] is False and body["ack"] is None and body["raised_at"].endswith("Z")
    text = json.dumps(body)
    assert "PID-4711" not in text and "Doe" not in text and "19700101" not in text


def test_re_sent_report_raises_nothing_twice(checked):
    report = ct_report([ct_event("Head", 85.0, 900.0)])
    assert len(checked.ingest(report)) == 1
    assert checked.ingest(report) == []  # the same SOP instance again: a duplicate
    assert len(checked.alerts()) == 1 and len(checked.outbox("alert")) == 1


def test_acknowledge_records_who_why_when_and_queues_it(checked, store):
    (alert,) = checked.ingest(ct_report([ct_event("Head", 85.0, 900.0)]))
    with store.transaction() as tx:
        acked = acknowledge(tx, alert.id, "RT-12", "protocol reviewed with physicist", note="bariatric patient")
    assert acked.acknowledged and acked.ack["by"] == "RT-12" and acked.ack["at"].endswith("Z")
    (stored,) = list_alerts(store.db, acknowledged=True)
    assert stored.ack == acked.ack
    (row,) = checked.outbox("ack")
    assert json.loads(row["body"]) == {"alert_id": alert.id, "station": "CT1", **acked.ack}
    with store.transaction() as tx, pytest.raises(AlreadyAcknowledged, match="acknowledged by RT-12"):
        acknowledge(tx, alert.id, "RT-13", "again")


def test_a_warning_may_be_acknowledged_without_reason_a_critical_one_may_not(checked, store):
    alerts = checked.ingest(rf_report(dose_rp_Gy=5.0))
    warning = next(a for a in alerts if a.severity == "warning")
    critical = next(a for a in alerts if a.severity == "critical")
    with store.transaction() as tx:
        assert acknowledge(tx, warning.id, "RT-1", None).ack["reason"] is None
    for reason in (None, "", "   "):
        with store.transaction() as tx, pytest.raises(ValueError, match="critical: a reason is required"):
            acknowledge(tx, critical.id, "RT-1", reason)
    assert list_alerts(store.db, acknowledged=False)[0].id == critical.id
    assert checked.outbox("ack") and len(checked.outbox("ack")) == 1


def test_unknown_alert_and_anonymous_acknowledgement_are_refused(checked, store):
    (alert,) = checked.ingest(ct_report([ct_event("Head", 85.0, 900.0)]))
    with store.transaction() as tx, pytest.raises(UnknownAlert):
        acknowledge(tx, "alert-nope", "RT-1", "x")
    with store.transaction() as tx, pytest.raises(ValueError, match="who acknowledges"):
        acknowledge(tx, alert.id, " ", "x")


def test_a_fixed_reason_is_sent_as_chosen_while_free_text_loses_the_patients_name(checked, store):
    # an unidentified emergency patient is often registered with placeholder words that are also the
    # console's reasons: the chosen reason must reach the central site whole, a typed note still redacted
    report = ct_report([ct_event("Head", 85.0, 900.0)])
    report.phi = PHI(patient_id="ER-0001", patient_name="UNKNOWN^TRAUMA PATIENT")
    (alert,) = checked.ingest(report)
    with store.transaction() as tx:
        acknowledge(tx, alert.id, "RT-12", "large patient", note="Trauma patient, clinically justified")
    (row,) = checked.outbox("ack")
    body = json.loads(row["body"])
    assert body["reason"] == "large patient"
    assert "rauma" not in body["note"] and "[removed]" in body["note"]
    (stored,) = list_alerts(store.db, acknowledged=True)
    assert stored.ack["reason"] == "large patient"


def test_a_typed_reason_still_loses_the_patients_name(checked, store):
    report = ct_report([ct_event("Head", 85.0, 900.0)])
    report.phi = PHI(patient_id="PID-4711", patient_name="Doe^Jane")
    (alert,) = checked.ingest(report)
    with store.transaction() as tx:
        acknowledge(tx, alert.id, "RT-12", "Mrs Doe asked to proceed")
    (row,) = checked.outbox("ack")
    assert "Doe" not in json.loads(row["body"])["reason"]
