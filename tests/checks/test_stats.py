"""Local statistics from the store: n, median, p75, proposed local DRL; unmatched exams are visible."""
from agent.checks.stats import compute, patient_group
from agent.store.reports import Receipt, save_report
from tests.checks.conftest import Checked, REPO_CONFIG, ct_event, ct_report, rules_from, uid

UK = f'[checks]\ntables = ["{REPO_CONFIG}/reference-levels/uk-ukhsa-2024-adult-ct.toml"]\nstats_min_n = 4\n'


def row(rows, exam, quantity, group="adult"):
    (found,) = [r for r in rows if r["exam"] == exam and r["quantity"] == quantity and r["patient_group"] == group]
    return found


def test_statistics_per_station_exam_and_group(store):
    rules = rules_from(UK)
    c = Checked(store, rules)
    for dlp in (100, 200, 300, 400):
        c.ingest(ct_report([ct_event("Head", 40.0, float(dlp))]))
    c.ingest(ct_report([ct_event("Head", 30.0, 500.0)], age=3))
    c.ingest(ct_report([ct_event("Daily QA", 10.0, 20.0, target_region="Other")]))
    rows = compute(store.db, rules)

    dlp = row(rows, "CT head", "DLP")
    assert (dlp["station"], dlp["n"], dlp["median"], dlp["p75"], dlp["unit"]) == ("CT1", 4, 250.0, 325.0, "mGy·cm")
    assert dlp["proposed_local_drl"] == 325.0
    assert [d["rule"] for d in dlp["drls"]] == ["uk2024-ct-head-dlp"]

    child = row(rows, "CT head", "DLP", "paediatric 1-5 y")
    assert (child["n"], child["proposed_local_drl"], child["drls"]) == (1, None, [])

    ctdi = row(rows, "CT head", "CTDIvol")
    assert (ctdi["scope"], ctdi["n"], ctdi["median"]) == ("per_event", 4, 40.0)

    unmatched = row(rows, "unmatched", "DLP")
    assert unmatched["n"] == 1


def test_backfilled_reports_count_and_cumulative_reports_count_once(store):
    rules = rules_from(UK)
    study = uid()
    e1, e2 = ct_event("Head", 40.0, 300.0), ct_event("Head", 40.0, 200.0)
    with store.transaction() as tx:  # stored before the checks existed: no stage ran
        for n, report in enumerate([ct_report([e1], study_uid=study), ct_report([e1, e2], study_uid=study)]):
            save_report(tx, report, Receipt(f"2024-01-01T00:00:0{n}Z", "import", "-", "0" * 64, 0), "CT1")
    dlp = row(compute(store.db, rules), "CT head", "DLP")
    assert (dlp["n"], dlp["median"]) == (1, 500.0)


def test_patient_groups_follow_the_configured_bands():
    rules = rules_from()
    assert [patient_group(a, rules) for a in (None, 0.5, 1, 4.99, 15, 17.9, 18, 80)] == [
        "adult", "paediatric 0-1 y", "paediatric 1-5 y", "paediatric 1-5 y", "paediatric 15-18 y",
        "paediatric 15-18 y", "adult", "adult"]


def test_ct_values_on_the_16_and_32_cm_phantoms_are_kept_apart(store):
    """A child's chest scan reads about twice as high on the 16-cm phantom: mixing both in one median
    would mislead, and the RP 185 body rows (32 cm) apply only beside values on that phantom."""
    rules = rules_from(f'[checks]\ntables = ["{REPO_CONFIG}/reference-levels/eu-rp185-2018-paediatric-ct.toml"]\n')
    c = Checked(store, rules)
    for ctdivol, phantom in ((2.0, "IEC Body Dosimetry Phantom"), (3.0, "IEC Body Dosimetry Phantom"),
                             (4.0, "IEC Head Dosimetry Phantom"), (6.0, "IEC Head Dosimetry Phantom")):
        c.ingest(ct_report([ct_event("Chest", ctdivol, 50.0, phantom=phantom)], age=8, weight=20.0))
    ctdi = {r["phantom"]: r for r in compute(store.db, rules) if r["quantity"] == "CTDIvol"}
    assert set(ctdi) == {"body", "head"}
    assert (ctdi["body"]["n"], ctdi["body"]["median"]) == (2, 2.5)
    assert (ctdi["head"]["n"], ctdi["head"]["median"]) == (2, 5.0)
    assert [d["rule"] for d in ctdi["body"]["drls"]] == ["eu-rp185-chest-weight15-30kg-ctdivol"]
    assert ctdi["head"]["drls"] == []
