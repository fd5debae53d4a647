"""End to end: a simulated fluoroscopy procedure on a simulated DAP meter raises the fluoroscopy threshold
alerts in order at the right cumulative values; the procedure's RDSR then arrives by C-STORE and the meter
total is reconciled with it (a 30 % difference is a QA finding).
"""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from agent.checks import ChecksStage, list_alerts, load_rules
from agent.config import ChecksConfig, Config, DicomConfig
from agent.pipeline import Pipeline
from agent.readings.hooks import checks_hooks
from agent.readings.reconcile import Reconcile
from agent.sources.dicom.scp import DicomSource
from agent.sources.dicom.scu import send
from simulator.rdsr import ProjectionEvent, projection_report

RATE = 100.0  # Gy·cm²/s: 300 Gy·cm² after 3 s, 600 after 6 s
POLL_S = 0.1
STEP_GYCM2 = RATE * POLL_S


def test_live_thresholds_then_rdsr_reconciliation(rig, tmp_path):
    rules = load_rules(ChecksConfig())
    on_cumulative, on_staff_total = checks_hooks(lambda: rules, "room-3")
    scenario = {"driver": "diamentor", "device": {"unit": 2}, "after": "idle",
                "phase": [{"duration_s": 0.5, "rate": 0.0}, {"duration_s": 6.0, "rate": RATE}]}
    r = rig(scenario, hooks={"on_cumulative": on_cumulative, "on_staff_total": on_staff_total},
            poll_interval_s=POLL_S, device="dap-1")
    r.wait_for(lambda: (r.rows("SELECT MAX(dap_Gym2) FROM serial_procedures")[0][0] or 0) >= 0.0599, timeout=15)
    r.wait_until_sim(7.0)

    # -- live: the fluoroscopy thresholds, in order, each at the first poll at or above its level --------
    (uid, meter_total) = r.rows("SELECT uid, dap_Gym2 FROM serial_procedures")[0]
    fired = [a.to_dict() for topic, a in r.bus_messages if topic == "alert"]
    assert sorted(a["id"] for a in fired) == sorted(a.id for a in list_alerts(r.store.db))  # published = stored
    assert all(a["kind"] == "fluoro_threshold" and a["procedure_id"] == uid and a["quantity"] == "KAP"
               for a in fired)
    per_gycm2 = {"Gy·cm²": Decimal(1), "Gy·m²": Decimal("0.0001")}[fired[0]["unit"]]
    levels = [(a["level"], Decimal(str(a["threshold"])) / per_gycm2) for a in fired]
    assert [t for _, t in levels] == sorted(t for _, t in levels)  # raised in the order the dose reached them
    assert levels[0] == ("first notification", 300)
    assert ("SRDL", 500) in levels
    assert {400, 500} <= {t for level, t in levels if level.startswith("subsequent")}
    for a in fired:  # each fired at the first poll that reached it: within one poll's increment
        value, threshold = Decimal(str(a["value"])) / per_gycm2, Decimal(str(a["threshold"])) / per_gycm2
        assert threshold <= value < threshold + Decimal(str(STEP_GYCM2 * 1.5))

    # -- later: the RDSR of the same procedure arrives by C-STORE, 30 % below the meter -------------------
    start, end = r.rows("SELECT first_dose_t, last_dose_t FROM serial_procedures")[0]
    rdsr_total = (Decimal(repr(meter_total)) * Decimal("0.7")).quantize(Decimal("0.000001"))
    report = projection_report([ProjectionEvent(dap=str(rdsr_total / 2)), ProjectionEvent(dap=str(rdsr_total / 2))],
                               when=datetime.fromtimestamp(start).replace(microsecond=0), station="SIMRF1")
    cfg = Config(dicom=DicomConfig(bind="127.0.0.1", port=0))
    pipeline = Pipeline(r.store, tmp_path / "spool", "room-3", r.source.bus,
                        stages=[ChecksStage(rules), Reconcile.from_config(cfg)])
    scp = DicomSource(cfg.dicom, pipeline)
    pipeline.start()
    scp.start()
    try:
        assert send([report], "127.0.0.1", scp.port, called_ae=cfg.dicom.ae_title) == [0]
    finally:
        scp.stop()
        pipeline.stop()
    (row,) = r.rows("SELECT procedure_id, meter_dap_Gym2, rdsr_dap_Gym2, round(difference_rel, 3), finding"
                    " FROM serial_reconciliations")
    assert row == (1, meter_total, float(rdsr_total), round(meter_total / float(rdsr_total) - 1, 3), 1)
    bodies = [json.loads(b) for (b,) in r.rows("SELECT body FROM outbox WHERE kind = 'reading'")]
    finding = [b for b in bodies if b.get("type") == "reconciliation"]
    assert finding and finding[0]["qa_finding"] is True and finding[0]["procedure_id"] == uid
    assert end >= start
