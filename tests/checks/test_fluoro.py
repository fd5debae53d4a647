"""Fluoroscopy thresholds on live partial values and on cumulative RDSR totals: each level once per procedure."""
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from agent.checks.fluoro import evaluate_procedure
from agent.checks.units import UnitError
from tests.checks.conftest import rf_report, rules_from, uid

DEFAULTS = rules_from()


def stream(store, values, quantity="Ka_r", unit="Gy", procedure="proc-1", rules=DEFAULTS):
    """Feed a stream of cumulative values; the levels raised after each one."""
    out = []
    for v in values:
        with store.transaction() as tx:
            alerts = evaluate_procedure(tx, rules, "ROOM1", procedure, quantity, v, unit)
        out.append([a.level for a in alerts])
    return out


def test_kar_stream_first_subsequent_and_srdl_each_once(store):
    levels = stream(store, ["0.5", "2.999", "3.0", "3.4", "3.999", "4.0", "4.2", "5.0", "5.0", "7.5", "7.9", "8.0"])
    assert levels == [
        [], [], ["first notification"], [], [], ["subsequent notification at 4 Gy"], [],
        ["subsequent notification at 5 Gy", "SRDL"], [],
        ["subsequent notification at 7 Gy"],  # a jump over 6 Gy raises the highest level reached
        [], ["subsequent notification at 8 Gy"],
    ]


def test_alert_fields_for_a_live_stream(store):
    with store.transaction() as tx:
        (first, srdl) = evaluate_procedure(tx, DEFAULTS, "ROOM1", "proc-9", "Ka,r", 5200, "mGy")[::2]
    assert (first.kind, first.severity, first.procedure_id, first.rule, first.unit) == \
        ("fluoro_threshold", "warning", "proc-9", "ncrp168-kar-first", "Gy")
    assert (srdl.severity, srdl.value, srdl.threshold, srdl.level) == ("critical", Decimal("5.2"), 5, "SRDL")
    assert "substantial radiation dose level" in srdl.message
    assert srdl.source.startswith("NCRP Report No. 168") and not srdl.source.endswith("(not verified)")


def test_kap_in_any_unit_hits_300_gy_cm2_exactly(store):
    # 0.03 Gy·m² is 300 Gy·cm²: the float 0.03 must not fall a hair short of it.
    assert stream(store, [0.03], "DAP", "Gy·m²", "a") == [["first notification"]]
    assert stream(store, [29999.99], "KAP", "cGy·cm²", "b") == [[]]
    assert stream(store, [30000], "KAP", "cGy·cm²", "c") == [["first notification"]]
    assert stream(store, [0.0299999], "KAP", "Gy·m²", "d") == [[]]


def test_fluoroscopy_time_in_minutes_or_seconds(store):
    assert stream(store, [1799, 1800, 2699, 2700, 3600], "fluoro_time", "s") == [
        [], ["first notification"], [], ["subsequent notification at 45 min"],
        ["subsequent notification at 60 min", "SRDL"]]


def test_procedures_are_independent(store):
    assert stream(store, [3.0], procedure="p1") == [["first notification"]]
    assert stream(store, [3.0], procedure="p2") == [["first notification"]]
    assert stream(store, [3.0], procedure="p1") == [[]]


def test_unknown_unit_is_refused(store):
    with store.transaction() as tx, pytest.raises(UnitError):
        evaluate_procedure(tx, DEFAULTS, "ROOM1", "p", "KAP", 1, "Gy·cm3")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.decimals(min_value=Decimal(0), max_value=Decimal(150), places=1), min_size=1, max_size=12))
def test_any_stream_raises_each_level_once_and_only_when_reached(tmp_path_factory, increments):
    from agent.store import Store

    store = Store.open(tmp_path_factory.mktemp("s") / "agent.sqlite")
    try:
        total, raised = Decimal(0), []
        for inc in increments:
            total += inc  # a DAP meter's cumulative reading, Gy·cm²
            with store.transaction() as tx:
                raised += evaluate_procedure(tx, DEFAULTS, "ROOM1", "p", "KAP", total, "Gy·cm²")
        assert len({a.id for a in raised}) == len(raised)
        assert all(a.value >= a.threshold for a in raised)
        assert any(a.level == "first notification" for a in raised) is (total >= 300)
        assert any(a.level == "SRDL" for a in raised) is (total >= 500)
        subsequent = [a for a in raised if a.rule == "ncrp168-kap-subsequent"]
        assert len(subsequent) <= max(0, int((total - 300) // 100))
        assert bool(subsequent) is (total >= 400)
    finally:
        store.close()


def test_cumulative_rdsr_totals_of_a_fluoro_study_do_not_refire(checked):
    study = uid()
    assert checked.ingest(rf_report(study_uid=study, dose_rp_Gy=2.9, dap_Gym2=0.02, fluoro_time_s=600)) == []
    first = checked.ingest(rf_report(study_uid=study, dose_rp_Gy=0.2, dap_Gym2=0.001, fluoro_time_s=60))
    assert [(a.rule, a.value) for a in first] == [("ncrp168-kar-first", Decimal("3.1"))]  # 2.9 + 0.2 Gy, exactly
    assert first[0].procedure_id == study and first[0].study_instance_uid == study
    assert checked.ingest(rf_report(study_uid=study, dose_rp_Gy=0.1, dap_Gym2=0.001, fluoro_time_s=60)) == []
    assert len(checked.outbox("alert")) == 1


def test_a_configured_first_notification_replaces_the_built_in_one(store):
    rules = rules_from("""
[[checks.level]]
id = "paed-kar-first"
kind = "notification_first"
modality = ["RF", "XA"]
quantity = "Ka_r"
value = 1
unit = "Gy"
scope = "per_procedure"
source = "site"
evidence = "local"
verified = true
""")
    assert stream(store, [1.0, 2.0, 3.0], rules=rules) == [
        ["first notification"], ["subsequent notification at 2 Gy"], ["subsequent notification at 3 Gy"]]


def test_thresholds_configured_for_one_exam_or_region_apply_to_its_studies(store):
    """A local first notification for PCI (exam) and an SRDL for the head (region): a PCI and a cerebral
    angiography reach them, a study of another exam does not."""
    from tests.checks.conftest import Checked

    level = """
[[checks.level]]
id = "{id}"
kind = "{kind}"
modality = ["RF", "XA"]
{where}
quantity = "{quantity}"
value = {value}
unit = "{unit}"
scope = "per_procedure"
source = "local"
evidence = "local"
verified = true
"""
    checked = Checked(store, rules_from(
        level.format(id="local-pci-kar-first", kind="notification_first", where='exam = "XA PCI"', quantity="Ka_r",
                     value=2, unit="Gy")
        + level.format(id="local-head-kap-srdl", kind="SRDL", where='region = "head"', quantity="KAP", value=200,
                       unit="Gy·cm²")), station="XA1")
    pci = checked.ingest(rf_report(dose_rp_Gy=2.5, description="PCI LAD stent"))
    assert [(a.rule, a.level) for a in pci] == [("local-pci-kar-first", "first notification")]
    angio = checked.ingest(rf_report(dap_Gym2=0.025, description="Cerebral angiography"))
    assert [(a.rule, a.level) for a in angio] == [("local-head-kap-srdl", "SRDL")]
    assert checked.ingest(rf_report(dose_rp_Gy=2.5, dap_Gym2=0.025, description="Hip fluoroscopy")) == []


def test_reports_sharing_only_some_events_are_checked_on_the_distinct_events(checked):
    """Two reports of one procedure share one event, neither holds the other: the checks count each
    event once, as the stored study totals do, for fluoroscopy time (the events' durations) and for a
    total no event states (the largest stated total, never nothing)."""
    from agent.extract.record import Event
    from agent.store.reports import study_totals

    def fluoro(seconds):
        return Event(irradiation_event_uid=uid(), event_type="Fluoroscopy", irradiation_duration_s=seconds)

    study = uid()
    e1, e2, e3 = fluoro(900.0), fluoro(300.0), fluoro(900.0)
    assert checked.ingest(rf_report(study_uid=study, fluoro_time_s=1200.0, dose_rp_Gy=2.0, events=[e1, e2])) == []
    second = checked.ingest(rf_report(study_uid=study, fluoro_time_s=1200.0, dose_rp_Gy=3.5, events=[e2, e3]))
    assert sorted((a.rule, a.value) for a in second) == [
        ("ncrp168-kar-first", Decimal("3.5")), ("ncrp168-time-first", Decimal("35"))]  # 2,100 s of distinct events
    totals = study_totals(checked.store.db, study)
    assert (totals["fluoro_time_total_s"], totals["dose_rp_total_Gy"]) == (2100.0, 3.5)
