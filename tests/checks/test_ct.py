"""CT checks: AAPM notification values per series, the accumulated alert value, the scanner's dose check."""
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from agent.checks import ChecksStage
from agent.extract.record import DoseCheck
from tests.checks.conftest import Checked, ct_event, ct_report, kinds, rules_from, uid

DEFAULTS = rules_from()


def notified(checked, protocol, ctdivol, **patient):
    alerts = checked.ingest(ct_report([ct_event(protocol, ctdivol, 10.0)], **patient))
    return [a for a in alerts if a.kind == "ct_notification_value"]


@pytest.mark.parametrize("ctdivol,fires", [(79.99, False), (80.0, True), (80.01, True), (200.0, True)])
def test_adult_head_notification_fires_at_and_above_80_mgy(checked, ctdivol, fires):
    found = notified(checked, "Head", ctdivol)
    assert bool(found) is fires
    if fires:
        (a,) = found
        assert (a.rule, a.severity, a.threshold, a.unit, a.exam) == ("aapm2011-adult-head", "warning", 80, "mGy", "CT head")
        assert a.value == Decimal(str(ctdivol)) and a.source.endswith("(not verified)")
        assert "Head" in a.message and "80 mGy" in a.message


@pytest.mark.parametrize("protocol", ["Head {routine}", "Head {0}", "Head }", "Head {"])
def test_braces_in_a_protocol_name_do_not_lose_the_alert(checked, protocol):
    # a protocol name is the modality's free text, quoted in the message: never a format string
    (a,) = notified(checked, protocol, 95.0)
    assert a.rule == "aapm2011-adult-head"
    assert f"of series '{protocol}' is at or above the notification value 80 mGy" in a.message


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("400"), places=2), st.sampled_from(["Head", "Chest"]))
def test_notification_boundary_is_exact_for_any_value(tmp_path_factory, ctdivol, protocol):
    from agent.store import Store

    store = Store.open(tmp_path_factory.mktemp("s") / "agent.sqlite")
    try:
        found = notified(Checked(store, DEFAULTS), protocol, float(ctdivol))
    finally:
        store.close()
    limit = Decimal(80 if protocol == "Head" else 50)
    assert bool(found) is (ctdivol >= limit)


@pytest.mark.parametrize("age,ctdivol,rule", [
    (1.99, 50.0, "aapm2011-paed-head-under2"), (1.99, 49.9, None),
    (2.0, 59.9, None), (2.0, 60.0, "aapm2011-paed-head-2to5"), (5.9, 60.0, "aapm2011-paed-head-2to5"),
    (6.0, 79.9, None), (6.0, 80.0, "agent-paed-head-6plus"), (17.9, 80.0, "agent-paed-head-6plus"),
    (18.0, 80.0, "aapm2011-adult-head"), (None, 80.0, "aapm2011-adult-head"),
])
def test_paediatric_head_bands(checked, age, ctdivol, rule):
    found = notified(checked, "Head", ctdivol, age=age)
    assert [a.rule for a in found] == ([rule] if rule else [])


@pytest.mark.parametrize("phantom,ctdivol,rules", [
    ("IEC Body Dosimetry Phantom", 10.0, ["aapm2011-paed-torso-under10-32cm"]),
    ("IEC Body Dosimetry Phantom", 9.99, []),
    ("IEC Head Dosimetry Phantom", 24.9, []),
    ("IEC Head Dosimetry Phantom", 25.0, ["aapm2011-paed-torso-under10-16cm"]),
    (None, 25.0, ["aapm2011-paed-torso-under10-16cm", "aapm2011-paed-torso-under10-32cm"]),
])
def test_paediatric_torso_depends_on_the_ctdi_phantom(checked, phantom, ctdivol, rules):
    report = ct_report([ct_event("Chest", ctdivol, 100.0, phantom=phantom)], age=4)
    found = [a for a in checked.ingest(report) if a.kind == "ct_notification_value"]
    assert sorted(a.rule for a in found) == rules


@pytest.mark.parametrize("protocol,phantom,ctdivol,rule", [
    ("Brain Perfusion", None, 61.0, "aapm2011-paed-head-2to5"),
    ("Cardiac CTA", "IEC Body Dosimetry Phantom", 20.0, "aapm2011-paed-torso-under10-32cm"),
])
def test_a_childs_perfusion_or_cardiac_series_meets_the_paediatric_values(checked, protocol, phantom, ctdivol, rule):
    """AAPM's brain perfusion and cardiac values are for adults; applied to a 4-year-old they replaced the
    paediatric head and torso values (a series at 15 times the paediatric value went unnotified)."""
    report = ct_report([ct_event(protocol, ctdivol, 300.0, phantom=phantom)], age=4)
    assert [a.rule for a in checked.ingest(report) if a.kind == "ct_notification_value"] == [rule]
    adult = ct_report([ct_event(protocol, ctdivol, 300.0, phantom=phantom)], age=40)
    assert [a for a in checked.ingest(adult) if a.kind == "ct_notification_value"] == []


def test_each_series_is_notified_once_even_when_a_cumulative_report_repeats_it(checked):
    study = uid()
    first = ct_event("Head", 90.0, 1500.0)
    assert kinds(checked.ingest(ct_report([first], study_uid=study))) == ["ct_notification_value"]
    second = ct_event("Head", 95.0, 1600.0)
    again = checked.ingest(ct_report([first, second], study_uid=study))  # cumulative: repeats the first series
    assert [a.irradiation_event_uid for a in again] == [second.irradiation_event_uid]
    assert len(checked.alerts(kind="ct_notification_value")) == 2


def _alert_value_fired(checked, events, study=None):
    return [a for a in checked.ingest(ct_report(events, study_uid=study)) if a.kind == "ct_alert_value"]


def test_accumulated_ctdivol_alert_value_fires_at_1000_mgy_per_region(checked):
    assert _alert_value_fired(checked, [ct_event("Perfusion", 500.0, 1.0), ct_event("Perfusion", 499.99, 1.0)]) == []
    (a,) = _alert_value_fired(checked, [ct_event("Perfusion", 500.0, 1.0), ct_event("Perfusion", 500.0, 1.0)])
    assert (a.rule, a.severity, a.value, a.threshold, a.level) == ("aapm2011-alert-ctdivol", "critical", 1000, 1000, "head")
    # two regions are accumulated apart
    assert _alert_value_fired(checked, [ct_event("Head", 600.0, 1.0), ct_event("Chest", 600.0, 1.0)]) == []


def test_accumulation_spans_the_reports_of_one_study_and_fires_once(checked):
    study = uid()
    assert _alert_value_fired(checked, [ct_event("Head", 400.0, 1.0)], study) == []
    assert _alert_value_fired(checked, [ct_event("Head", 400.0, 1.0)], study) == []  # 800 mGy in total
    (a,) = _alert_value_fired(checked, [ct_event("Head", 200.0, 1.0)], study)  # 1000 mGy
    assert a.value == 1000 and a.study_instance_uid == study
    assert _alert_value_fired(checked, [ct_event("Head", 50.0, 1.0)], study) == []  # raised once per study and region


def test_series_of_no_known_region_are_accumulated_together(checked):
    (a,) = _alert_value_fired(checked, [ct_event("Series A", 500.0, 1.0), ct_event("Series B", 500.0, 1.0)])
    assert a.level == "unknown region"


def test_scanner_dose_check_alert_is_surfaced_with_the_operators_reason(checked):
    check = DoseCheck(dlp_alert_value_mGycm=100.0, ctdivol_alert_value_mGy=10.0,
                      accumulated_dlp_forward_estimate_mGycm=251.2, alert_reason="patient size, consultant approved",
                      person_authorizing="Dr Who^A")
    alerts = checked.ingest(ct_report([ct_event("Abdomen", 5.3, 251.2, dose_check=check)]))
    (a,) = [a for a in alerts if a.kind == "modality_dose_check"]
    assert (a.severity, a.quantity, a.value, a.threshold, a.unit, a.level) == \
        ("critical", "DLP", Decimal("251.2"), Decimal("100.0"), "mGy·cm", "alert")
    assert "patient size, consultant approved" in a.message
    assert "Who" not in str(a.to_dict())  # the authorising person is not carried


def test_scanner_dose_check_below_its_configured_value_and_without_reason_is_quiet(checked):
    check = DoseCheck(ctdivol_alert_value_mGy=1000.0, ctdivol_notification_value_mGy=50.0)
    alerts = checked.ingest(ct_report([ct_event("Chest", 49.99, 300.0, dose_check=check)]))
    assert [a for a in alerts if a.kind == "modality_dose_check"] == []
    alerts = checked.ingest(ct_report([ct_event("Chest", 50.0, 300.0, dose_check=check)]))
    (a,) = [a for a in alerts if a.kind == "modality_dose_check"]
    assert (a.level, a.severity, a.value, a.threshold) == ("notification", "warning", 50, 50)
    assert "CTDIvol of the series (no forward estimate stated) 50 mGy" in a.message  # not called an estimate


def test_a_scanner_check_stated_as_not_configured_is_not_applied(checked):
    """TID 10015: "CTDIvol Notification Value Configured" = No: a value stated beside it is not in force."""
    check = DoseCheck(ctdivol_notification_value_mGy=50.0, ctdivol_notification_configured=False)
    alerts = checked.ingest(ct_report([ct_event("Chest", 60.0, 300.0, dose_check=check)]))
    assert [a for a in alerts if a.kind == "modality_dose_check"] == []


def test_a_notification_reason_alone_is_surfaced(checked):
    check = DoseCheck(notification_reason="repeat after motion")
    alerts = checked.ingest(ct_report([ct_event("Chest", 12.0, 300.0, dose_check=check)]))
    (a,) = [a for a in alerts if a.kind == "modality_dose_check"]
    assert a.value is None and "repeat after motion" in a.message


def test_checks_can_be_switched_off(store):
    c = Checked(store, rules_from("[checks]\nenabled = false\n"))
    assert c.ingest(ct_report([ct_event("Head", 500.0, 9000.0)])) == []
    assert isinstance(c.stage, ChecksStage)
