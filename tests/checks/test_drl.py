"""DRL checks with the shipped example tables: one examination (or sequence) above a DRL, and the rolling median."""
from decimal import Decimal

import pytest

from tests.checks.conftest import Checked, REPO_CONFIG, ct_event, ct_report, rf_report, rules_from, uid

UK = f'[checks]\ntables = ["{REPO_CONFIG}/reference-levels/uk-ukhsa-2024-adult-ct.toml"]\n'
EU = f'[checks]\ntables = ["{REPO_CONFIG}/reference-levels/eu-rp185-2018-paediatric-ct.toml"]\n'
CH = f'[checks]\ntables = ["{REPO_CONFIG}/reference-levels/ch-aroua-2007-fluoroscopy.toml"]\n'


def drl_alerts(alerts, kind="exam_above_drl"):
    return sorted((a.rule, a.value) for a in alerts if a.kind == kind)


@pytest.fixture
def uk(store):
    return Checked(store, rules_from(UK))


def test_sequence_scope_and_examination_scope_are_checked_apart(uk):
    # UK CT head: CTDIvol 47 mGy per sequence, DLP 790 mGy·cm per complete examination.
    report = ct_report([ct_event("Head", 46.99, 400.0), ct_event("Head", 47.0, 389.99)])  # DLP total 789.99
    found = [a for a in uk.ingest(report) if a.kind == "exam_above_drl"]
    (a,) = found
    assert (a.rule, a.value, a.scope, a.severity) == ("uk2024-ct-head-ctdivol", Decimal("47.0"), "per_event", "info")
    assert a.irradiation_event_uid == report.events[1].irradiation_event_uid
    assert "UKHSA" in a.source and not a.source.endswith("(not verified)")

    report = ct_report([ct_event("Head", 40.0, 400.0), ct_event("Head", 40.0, 390.0)])  # DLP total 790
    (a,) = [a for a in uk.ingest(report) if a.kind == "exam_above_drl"]
    assert (a.rule, a.value, a.scope, a.irradiation_event_uid) == ("uk2024-ct-head-dlp", 790, "per_examination", None)


def test_localizers_are_not_sequences(uk):
    report = ct_report([ct_event("Topogram", 60.0, 5.0, target_region="Head", event_type="Constant Angle Acquisition"),
                        ct_event("Head", 30.0, 400.0)])
    assert drl_alerts(uk.ingest(report)) == []


def test_examination_value_counts_each_event_once_across_cumulative_reports(uk):
    study = uid()
    e1, e2, e3 = ct_event("Head", 30.0, 300.0), ct_event("Head", 30.0, 300.0), ct_event("Head", 30.0, 190.0)
    assert drl_alerts(uk.ingest(ct_report([e1], study_uid=study))) == []
    assert drl_alerts(uk.ingest(ct_report([e1, e2], study_uid=study))) == []  # 600: the first report is superseded
    found = uk.ingest(ct_report([e1, e2, e3], study_uid=study))  # 790
    assert drl_alerts(found) == [("uk2024-ct-head-dlp", 790)]
    assert drl_alerts(uk.ingest(ct_report([e1, e2, e3, ct_event("Head", 1.0, 10.0)], study_uid=study))) == []
    assert len(uk.alerts(kind="exam_above_drl")) == 1


def test_factor_on_the_single_examination_check(store):
    c = Checked(store, rules_from(UK + "exam_drl_factor = 1.5\n"))
    assert drl_alerts(c.ingest(ct_report([ct_event("Head", 70.0, 100.0)]))) == []
    (a,) = [a for a in c.ingest(ct_report([ct_event("Head", 70.5, 100.0)])) if a.kind == "exam_above_drl"]
    assert a.threshold == Decimal("70.5") and "1.5 × the DRL" in a.message
    # the message names the DRL itself (47 mGy), not the factored limit as if it were the DRL
    assert "at or above 70.5 mGy (1.5 × the DRL 47 mGy)" in a.message
    assert "the DRL 70.5" not in a.message


def test_message_without_factor_names_the_drl(uk):
    (a,) = [a for a in uk.ingest(ct_report([ct_event("Head", 47.0, 100.0)])) if a.kind == "exam_above_drl"]
    assert "at or above the DRL 47 mGy:" in a.message


@pytest.mark.parametrize("age,weight,ctdivol,expected", [
    (8, 14.9, 1.8, "eu-rp185-chest-weight5-15kg-ctdivol"), (8, 14.9, 1.79, None),
    (8, 15.0, 2.7, "eu-rp185-chest-weight15-30kg-ctdivol"), (8, 15.0, 2.69, None),
    (8, None, 99.0, None),  # a weight band needs the weight
    (30, 20.0, 99.0, None),  # paediatric rows are not for adults
])
def test_paediatric_weight_bands(store, age, weight, ctdivol, expected):
    c = Checked(store, rules_from(EU))
    report = ct_report([ct_event("Chest", ctdivol, 1.0, phantom="IEC Body Dosimetry Phantom")], age=age, weight=weight)
    found = [a.rule for a in c.ingest(report) if a.kind == "exam_above_drl"]
    assert found == ([expected] if expected else [])


@pytest.mark.parametrize("phantom,expected", [("IEC Body Dosimetry Phantom", ["eu-rp185-chest-weight15-30kg-dlp"]),
                                               ("IEC Head Dosimetry Phantom", [])])
def test_a_paediatric_body_dlp_on_the_16_cm_phantom_is_not_held_against_the_32_cm_drl(store, phantom, expected):
    """The same exposure reads about twice as high on the 16-cm phantom; RP 185's body DRLs are for 32 cm
    (its DLP rows had no phantom, so a 16-cm DLP of 70 mGy·cm was flagged against the 32-cm 70)."""
    c = Checked(store, rules_from(EU))
    report = ct_report([ct_event("Chest", 0.5, 70.0, phantom=phantom)], age=8, weight=15.0)
    assert [a.rule for a in c.ingest(report) if a.kind == "exam_above_drl"] == expected


def test_median_above_drl_fires_once_per_episode(store):
    c = Checked(store, rules_from(UK + "median_window = 5\n"))

    def exam(dlp):
        return [a for a in c.ingest(ct_report([ct_event("Head", 20.0, dlp)])) if a.kind == "median_above_drl"]

    for dlp in (900, 900, 900, 100):  # only 4 examinations: no median yet
        assert exam(dlp) == []
    (a,) = exam(100)  # window 900 900 900 100 100: median 900 >= 790
    assert (a.rule, a.value, a.threshold, a.severity, a.level) == ("uk2024-ct-head-dlp", 900, 790, "warning", "episode 1")
    assert "last 5 CT head examinations" in a.message
    assert exam(900) == []  # still above: the same episode
    assert exam(100) == [] and exam(100) == []  # the median falls to 100: below, the episode ends quietly
    (b,) = exam(800) + exam(800) + exam(800)  # back above: a second episode, a new alert
    assert b.level == "episode 2" and b.id != a.id


def test_an_episode_in_a_restored_or_replaced_store_has_an_alert_id_of_its_own(store, tmp_path):
    """Episode numbers start again in a store restored from a backup or a new store on a replacement box:
    the new episode's alert must not carry the id of the earlier one, which the central site already
    holds and would drop the new alert as a duplicate of."""
    from agent.store import Store

    other = Store.open(tmp_path / "replacement.sqlite")
    try:
        found = []
        for s in (store, other):
            c = Checked(s, rules_from(UK + "median_window = 5\n"))
            found += [a for dlp in (900, 900, 900, 900, 900)
                      for a in c.ingest(ct_report([ct_event("Head", 20.0, dlp)])) if a.kind == "median_above_drl"]
    finally:
        other.close()
    a, b = found
    assert a.level == b.level == "episode 1" and a.id != b.id


def test_median_window_is_the_last_examinations_performed_not_the_last_imported(store):
    # the station has been running: its last 5 CT heads (November) are below the DRL.  A physicist then backfills
    # the year before (`alara-edge import`), at higher doses: those are older examinations, not the last 5.
    c = Checked(store, rules_from(UK + "median_window = 5\n"))

    def exam(dlp, when):
        report = ct_report([ct_event("Head", 20.0, dlp)])
        report.study.datetime = when
        return [a for a in c.ingest(report) if a.kind == "median_above_drl"]

    for day in range(1, 6):
        assert exam(400, f"2026-11-0{day}T09:00:00") == []
    for day in range(1, 6):
        assert exam(900, f"2025-01-0{day}T09:00:00") == []  # older: the window stays November's (median 400)
    assert exam(400, "2026-11-06T09:00:00") == []
    (a,) = exam(900, "2026-11-07T09:00:00") + exam(900, "2026-11-08T09:00:00") + exam(900, "2026-11-09T09:00:00")
    assert a.value == 900  # the last 5 performed: 400 400 900 900 900


def test_median_is_exactly_at_the_drl(store):
    c = Checked(store, rules_from(UK + "median_window = 2\n"))
    assert [a for a in c.ingest(ct_report([ct_event("Head", 20.0, 789.99)])) if a.kind == "median_above_drl"] == []
    (a,) = [a for a in c.ingest(ct_report([ct_event("Head", 20.0, 790.01)])) if a.kind == "median_above_drl"]
    assert a.value == 790  # (789.99 + 790.01) / 2, exactly


def test_median_window_is_per_patient_group_and_station(store):
    c = Checked(store, rules_from(UK + "median_window = 2\n"), station="CT1")
    other = Checked(store, rules_from(UK + "median_window = 2\n"), station="CT2")
    c.ingest(ct_report([ct_event("Head", 20.0, 900.0)]))
    c.ingest(ct_report([ct_event("Head", 20.0, 900.0)], age=10))  # a child: not in the adult window
    assert [a for a in other.ingest(ct_report([ct_event("Head", 20.0, 900.0)])) if a.kind == "median_above_drl"] == []
    (a,) = [a for a in c.ingest(ct_report([ct_event("Head", 20.0, 900.0)])) if a.kind == "median_above_drl"]
    assert a.station == "CT1"


def test_fluoroscopy_drl_from_a_table_in_cgy_cm2_compares_exactly(store):
    c = Checked(store, rules_from(CH))
    (a,) = [a for a in c.ingest(rf_report(description="Coronary angiography", dap_Gym2=0.008, fluoro_time_s=60))
            if a.kind == "exam_above_drl"]
    assert (a.rule, a.value, a.threshold, a.unit) == ("ch2007-coronary-angiography-kap", 80, 80, "Gy·cm²")
    assert [a for a in c.ingest(rf_report(description="Coronary angiography", dap_Gym2=0.0079999))
            if a.kind == "exam_above_drl"] == []


def test_the_median_window_is_read_through_an_index_not_a_sort_of_every_sample(store):
    # a station's year of CT heads is tens of thousands of samples: each check reads the newest N of them
    plan = " ".join(str(row[-1]) for row in store.db.execute(
        "EXPLAIN QUERY PLAN SELECT value FROM check_samples WHERE station = 'a' AND exam = 'CT head' "
        "AND quantity = 'CTDIvol' AND scope = 'per_event' ORDER BY coalesce(performed_at, recorded_at) DESC, rowid DESC"))
    assert "USING INDEX check_samples_window" in plan and "TEMP B-TREE" not in plan, plan
