"""Reconciliation of a DAP meter's procedure total with the modality's RDSR total."""
from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

from agent.extract.record import Event, Report, Totals
from agent.readings.reconcile import Reconcile

from .conftest import BERLIN, ctx, plain, reading, record


def rdsr(dap_total, start: datetime, minutes: int = 10, sop="1.2.3.4") -> SimpleNamespace:
    events = [Event(irradiation_event_uid=f"{sop}.{i}", datetime_started=(start.replace(minute=start.minute + i)
                                                                           ).strftime("%Y-%m-%dT%H:%M:%S"))
              for i in range(0, minutes, 5)]
    report = Report(sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67", study_instance_uid="9.8",
                    series_instance_uid=None, kind="projection", modality="RF", source="rdsr",
                    totals=Totals(dap_total_Gym2=dap_total), events=events)
    return SimpleNamespace(report=report, station="room-3", saved=SimpleNamespace(superseded_by=None), alerts=[])


def meter_procedure(store, ledger, start: datetime, dap: float) -> None:
    t0 = start.timestamp()
    record(store, ledger, ctx(), [reading("dap", 0.0, t0)])
    record(store, ledger, ctx(), [reading("dap", dap / 2, t0 + 120)])
    record(store, ledger, ctx(), [reading("dap", dap, t0 + 400)])


def reconciliations(store):
    return store.db.execute("SELECT procedure_id, meter_dap_Gym2, rdsr_dap_Gym2, round(difference_rel, 4), finding"
                            " FROM serial_reconciliations").fetchall()


def test_agreeing_totals_are_recorded_without_a_finding(store, hooks):
    ledger, _ = hooks
    start = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BERLIN)
    meter_procedure(store, ledger, start, 0.0320)
    stage = Reconcile({"dev": 0.25}, 900.0, BERLIN)
    with store.transaction() as tx:
        stage(tx, rdsr(0.0300, start.replace(tzinfo=None)))
    assert reconciliations(store) == [(1, 0.032, 0.03, 0.0667, 0)]


def test_a_difference_above_tolerance_is_a_qa_finding_sent_once(store, hooks):
    ledger, _ = hooks
    start = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BERLIN)
    meter_procedure(store, ledger, start, 0.0400)
    stage = Reconcile({"dev": 0.25}, 900.0, BERLIN)
    for _ in range(2):  # the same RDSR twice
        with store.transaction() as tx:
            stage(tx, rdsr(0.0300, start.replace(tzinfo=None)))
    assert reconciliations(store) == [(1, 0.04, 0.03, 0.3333, 1)]
    bodies = [json.loads(b) for (b,) in store.db.execute("SELECT body FROM outbox")]
    finding = [b for b in bodies if b["type"] == "reconciliation"]
    assert len(finding) == 1 and finding[0]["qa_finding"] is True and plain(finding[0]["procedure_id"]) == "room-3:dev:1"


def test_an_rdsr_from_another_time_matches_nothing(store, hooks):
    ledger, _ = hooks
    start = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BERLIN)
    meter_procedure(store, ledger, start, 0.0400)
    with store.transaction() as tx:
        Reconcile({}, 900.0, BERLIN)(tx, rdsr(0.0300, datetime(2026, 11, 23, 14, 0, 0)))
    assert reconciliations(store) == []


def test_back_to_back_procedures_each_take_their_own_rdsr(store, hooks):
    """A long procedure, then a short one three minutes later: the short one's RDSR is compared with the
    short procedure, not with the long one (a false 300 % QA finding, and no comparison for the short one)."""
    ledger, _ = hooks
    a = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BERLIN).timestamp()
    record(store, ledger, ctx(), [reading("dap", 0.0, a)])
    for i in range(1, 11):  # 9:01 to 9:10, 0.04 Gy·m²
        record(store, ledger, ctx(), [reading("dap", 0.004 * i, a + 60 * i)])
    b = a + 13 * 60  # the meter is reset at 9:13 (the reset is confirmed by the next reading)
    record(store, ledger, ctx(), [reading("dap", 0.0, b)])
    record(store, ledger, ctx(), [reading("dap", 0.0, b + 1)])
    for i in range(1, 4):  # 9:14 to 9:16, 0.0099 Gy·m²
        record(store, ledger, ctx(), [reading("dap", 0.0033 * i, b + 60 * i)])
    stage = Reconcile({"dev": 0.25}, 900.0, BERLIN)
    with store.transaction() as tx:  # the short procedure's RDSR first
        stage(tx, rdsr(0.0099, datetime(2026, 11, 23, 9, 14, 0), minutes=3, sop="B"))
    with store.transaction() as tx:
        stage(tx, rdsr(0.0400, datetime(2026, 11, 23, 9, 1, 0), minutes=10, sop="A"))
    rows = store.db.execute("SELECT sop_instance_uid, procedure_id, finding FROM serial_reconciliations"
                            " ORDER BY sop_instance_uid").fetchall()
    assert rows == [("A", 1, 0), ("B", 2, 0)]


def biplane_rdsr(start: datetime, plane_a: float, plane_b: float, sop="BI") -> SimpleNamespace:
    """A biplane RDSR: plane A's events then plane B's, the total being the sum of both planes."""
    events = [Event(irradiation_event_uid=f"{sop}.{i}", acquisition_plane=plane, dap_Gym2=dap / 2,
                    datetime_started=start.replace(minute=start.minute + i).strftime("%Y-%m-%dT%H:%M:%S"))
              for i, (plane, dap) in enumerate([("Plane A", plane_a), ("Plane B", plane_b)] * 2)]
    ingest = rdsr(plane_a + plane_b, start, sop=sop)
    ingest.report.events = events
    return ingest


def test_a_biplane_rdsr_is_compared_with_the_plane_the_meter_is_on_not_with_both(store, hooks):
    """A DAP meter on the frontal tube of a biplane system measures plane A only; the RDSR's total adds plane B.
    Compared with the total, every biplane procedure was a QA finding (here -40 %) for a meter that is right."""
    ledger, _ = hooks
    start = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BERLIN)
    meter_procedure(store, ledger, start, 0.0300)
    with store.transaction() as tx:  # which plane the meter is on is not configured: no comparison, no finding
        Reconcile({"dev": 0.25}, 900.0, BERLIN)(tx, biplane_rdsr(start.replace(tzinfo=None), 0.0300, 0.0200))
    assert reconciliations(store) == []
    with store.transaction() as tx:
        Reconcile({"dev": 0.25}, 900.0, BERLIN, planes={"dev": "A"})(
            tx, biplane_rdsr(start.replace(tzinfo=None), 0.0300, 0.0200, sop="BI2"))
    assert reconciliations(store) == [(1, 0.03, 0.03, 0.0, 0)]


def test_the_meters_plane_comes_from_its_serial_entry():
    from agent.config import Config
    cfg = Config.model_validate({"serial": [{"driver": "diamentor", "port": "/dev/ttyUSB0", "device": "frontal",
                                             "reconcile_plane": "A"},
                                            {"driver": "diamentor", "port": "/dev/ttyUSB1", "device": "lateral"}]})
    assert Reconcile.from_config(cfg).planes == {"frontal": "A"}
