"""The JSON API the page uses for alerts and acknowledgements (no browser)."""
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

from agent.checks.alerts import Alert, record

_ids = itertools.count(1)


def raise_alert(station, severity="critical", study_uid="1.2.826.0.1.3680043.10.99.1", publish=True) -> Alert:
    """Store an alert as the checks stage does (same transaction as its outbox row) and announce it."""
    n = next(_ids)
    alert = Alert(id=f"alert-test-{n}", kind="ct_notification_value", severity=severity, station="ct-1",
                  rule="aapm-ct-nv-adult-head", source="AAPM 2011 (test)", raised_at=f"2026-11-02T09:30:{n:02d}.000Z",
                  message="CTDIvol 120 mGy is above the notification value 80 mGy for an adult head.",
                  quantity="ctdivol", value=Decimal("120"), threshold=Decimal("80"), unit="mGy",
                  study_instance_uid=study_uid, exam="CT head")
    with station.store.transaction() as tx:
        record(tx, alert)
    if publish:
        station.bus.publish("alert", alert)
        station.bus.publish("outbox", None)
    return alert


def ack(station, alert_id, **body):
    csrf = station.request("/api/state")[2]["csrf"]
    return station.request(f"/api/alerts/{alert_id}/ack", "POST", body, {"X-CSRF-Token": csrf})


def test_state_lists_open_alerts_with_their_accession_number(station):
    s = station()
    first, second = raise_alert(s), raise_alert(s, severity="warning")
    status, _, state = s.request("/api/state")
    assert status == 200
    assert [a["id"] for a in state["alerts"]] == [second.id, first.id]
    assert state["alerts"][0]["value"] == 120.0 and state["alerts"][0]["unit"] == "mGy"
    assert state["reasons"] == ["clinically justified", "large patient", "repeat for motion", "protocol error", "other"]
    assert "patient_name" not in json.dumps(state)


def test_critical_alert_needs_a_reason_and_the_ack_reaches_the_outbox(station):
    s = station()
    alert = raise_alert(s)
    status, _, answer = ack(s, alert.id, by="RT42")
    assert status == 400 and "reason is required" in answer["error"]
    assert ack(s, alert.id, by="", reason="large patient")[0] == 400
    status, _, answer = ack(s, alert.id, by="RT42", reason="other")
    assert status == 400 and "note" in answer["error"]
    status, _, answer = ack(s, alert.id, by="RT42", reason="large patient", note="BMI 41")
    assert status == 200
    assert answer["alert"]["ack"]["by"] == "RT42" and answer["alert"]["ack"]["reason"] == "large patient"
    (sent,) = s.outbox("ack")
    assert (sent["alert_id"], sent["by"], sent["reason"], sent["note"]) == (alert.id, "RT42", "large patient", "BMI 41")
    assert ack(s, alert.id, by="RT43", reason="large patient")[0] == 409
    assert ack(s, "alert-none", by="RT43", reason="large patient")[0] == 404
    assert s.request("/api/state")[2]["alerts"] == []
    status, _, listed = s.request("/api/alerts?limit=10")
    assert [a["id"] for a in listed["alerts"]] == [alert.id] and listed["alerts"][0]["acknowledged"] is True


def test_a_typed_reason_naming_the_patient_is_not_logged(station, capsys):
    """The agent's log never holds the patient's name (README); a reason chosen from the list is logged."""
    from simulator import rdsr

    s = station()
    report = rdsr.ct_report([rdsr.CTSeries("Head")], patient=rdsr.Patient(name="O'Neill^Sean"))
    assert s.agent.pipeline.ingest(rdsr.encode(report), "test").status == "stored"
    first = raise_alert(s, study_uid=report.StudyInstanceUID)
    second = raise_alert(s, study_uid=report.StudyInstanceUID)
    capsys.readouterr()
    assert ack(s, first.id, by="RT9", reason="Sean O'Neill asked to repeat")[0] == 200
    assert ack(s, second.id, by="RT9", reason="large patient")[0] == 200
    logged = capsys.readouterr().out
    assert "O'Neill" not in logged and "Sean" not in logged
    assert "reason=(typed)" in logged and "reason='large patient'" in logged
    (sent, _) = s.outbox("ack")
    assert sent["reason"] == "[removed] [removed] asked to repeat"


def test_an_accession_number_holding_the_patients_name_is_shown_without_it(station):
    """docs/console.md: never by patient name unless show_patient_names; a modality wrote it into the accession."""
    from simulator import rdsr

    s = station()
    report = rdsr.ct_report([rdsr.CTSeries("Head")], patient=rdsr.Patient(name="Berg^Anna"), accession="Berg, Anna")
    assert s.agent.pipeline.ingest(rdsr.encode(report), "test").status == "stored"
    raise_alert(s, study_uid=report.StudyInstanceUID)
    state = s.request("/api/state")[2]
    assert state["alerts"][0]["accession_number"] == "[removed], [removed]"
    assert state["studies"][0]["accession_number"] == "[removed], [removed]"
    assert s.request("/api/alerts?limit=5")[2]["alerts"][0]["accession_number"] == "[removed], [removed]"


def test_event_stream_pushes_alert_and_ack(station):
    """What a browser's EventSource receives, read off the raw socket."""
    s = station()
    events: list[tuple[str, dict]] = []
    ready = threading.Event()

    def listen():
        with socket.create_connection(("127.0.0.1", s.console.port), timeout=10) as sock:
            sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{s.console.port}\r\n\r\n".encode())
            buf = b""
            while len([e for e in events if e[0] in ("alert", "ack")]) < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                if b": connected" in buf:
                    ready.set()
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in block.decode().splitlines()
                                  if ": " in line and not line.startswith(":"))
                    if "event" in fields:
                        events.append((fields["event"], json.loads(fields["data"])))

    t = threading.Thread(target=listen)
    t.start()
    assert ready.wait(10)
    alert = raise_alert(s)
    time.sleep(0.2)
    assert ack(s, alert.id, by="RT42", reason="repeat for motion")[0] == 200
    t.join(10)
    kinds = [e for e in events if e[0] in ("alert", "ack")]
    assert [k for k, _ in kinds] == ["alert", "ack"]
    assert kinds[0][1]["id"] == alert.id and kinds[0][1]["severity"] == "critical"
    assert kinds[1][1]["ack"]["reason"] == "repeat for motion"


def test_malformed_requests_are_answered_not_crashed_on(station):
    s = station()
    alert = raise_alert(s)
    csrf = {"X-CSRF-Token": s.request("/api/state")[2]["csrf"]}
    def raw(body: bytes, content_type: str):
        req = urllib.request.Request(f"{s.url}/api/alerts/{alert.id}/ack", data=body, method="POST",
                                     headers=dict(csrf, **{"Content-Type": content_type}))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert raw(b"by=RT42", "application/x-www-form-urlencoded") == 415
    assert raw(b"{not json", "application/json") == 400
    assert raw(b"[1, 2]", "application/json") == 400
    assert raw(json.dumps({"by": "x" * 100_000}).encode(), "application/json") == 413
    assert ack(s, alert.id, by="RT\x0742", reason="large patient")[0] == 400
    assert s.request("/api/alerts?limit=abc")[0] == 400
    assert s.request("/healthz")[0] == 200 and s.outbox("ack") == []


def _warnings_after(s, n: int, hour: int) -> None:
    """``n`` open CT notification warnings, one a minute from ``hour``:00 (one study of many series)."""
    with s.store.transaction() as tx:
        for i in range(n):
            record(tx, Alert(id=f"alert-warning-{hour}-{i}", kind="ct_notification_value", severity="warning",
                             station="ct-1", rule="aapm-ct-nv-adult-head", source="test",
                             raised_at=f"2026-11-02T{hour:02d}:{i:02d}:00.000Z",
                             message="CTDIvol above the notification value", study_instance_uid=f"1.2.{hour}.{i}"))


def test_an_open_critical_alert_stays_in_the_state_behind_many_newer_warnings(station):
    """A page (re)loading takes /api/state: a critical alert raised before 60 warnings must still be there."""
    s = station()
    critical = raise_alert(s, publish=False)
    _warnings_after(s, 60, hour=10)
    alerts = s.request("/api/state")[2]["alerts"]
    assert critical.id in [a["id"] for a in alerts]
    assert len(alerts) == 61 and alerts[-1]["id"] == critical.id  # newest first, the critical one too


def test_every_open_alert_is_in_the_state_however_many_there_are(station):
    """The banner's "+ N more open alerts: show all" lists every open one (docs/console.md): a page
    (re)loading after a burst of 60 warnings (one CT study of many series) must get the older open
    ones too, or they can no longer be seen nor acknowledged on the console."""
    s = station()
    older = raise_alert(s, severity="warning", publish=False)
    _warnings_after(s, 60, hour=11)
    alerts = s.request("/api/state")[2]["alerts"]
    assert len(alerts) == 61 and alerts[-1]["id"] == older.id
    assert len(s.request("/api/alerts?open=1")[2]["alerts"]) == 50  # the API's own limit is unchanged


def test_a_study_without_a_uid_is_not_coloured_by_every_alert_in_the_store(station):
    """A report whose Study Instance UID is empty: its row on the console showed the level and count
    of every alert of every study (list_alerts(study_instance_uid=None) means no filter), and no dose."""
    from agent.extract.record import Event, Report, Totals
    from agent.store.reports import Receipt, save_report

    s = station()
    raise_alert(s)  # a critical alert of another study
    report = Report(sop_instance_uid="1.2.3.9", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67", study_instance_uid=None,
                    series_instance_uid=None, kind="ct", modality="CT", source="rdsr",
                    totals=Totals(ct_dlp_total_mGycm=7.46, ct_event_count=1),
                    events=[Event(irradiation_event_uid="1.2.3.9.1", ctdivol_mGy=0.15, dlp_mGycm=7.46)])
    with s.store.transaction() as tx:
        save_report(tx, report, Receipt(received_at="2026-11-02T09:31:00.000000Z", origin="dicom", path="x.dcm",
                                        sha256="0", size_bytes=1), "ct-1")
    status, _, state = s.request("/api/state")
    assert status == 200
    (row,) = [st for st in state["studies"] if st["study_instance_uid"] is None]
    assert row["alerts"] == 0 and row["level"] == "none"
    assert {d["quantity"]: d["value"] for d in row["doses"]} == {"ctdivol_max_mGy": 0.15, "ct_dlp_total_mGycm": 7.46}
