"""Study totals: re-sent and cumulative reports never double-count an irradiation event."""
import pytest

from agent.extract.record import Event, Report, Totals
from agent.store.reports import Receipt, list_studies, save_report, study_totals


def ct(sop, study, events, dlp_total):
    return Report(sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67", study_instance_uid=study,
                  series_instance_uid="1.2.3", kind="ct", modality="CT", source="rdsr",
                  totals=Totals(ct_dlp_total_mGycm=dlp_total, ct_event_count=len(events)),
                  events=[Event(irradiation_event_uid=uid, ctdivol_mGy=10.0, dlp_mGycm=dlp) for uid, dlp in events])


def receipt():
    return Receipt(received_at="2026-11-02T09:00:00.000000Z", origin="dicom", path="x.dcm", sha256="0", size_bytes=1)


def save(store, report):
    with store.transaction() as tx:
        return save_report(tx, report, receipt(), "ct1")


def test_cumulative_reports_end_with_the_last_reports_total(store):
    a = save(store, ct("1.1", "9.9", [("e1", 100.0)], 100.0))
    b = save(store, ct("1.2", "9.9", [("e1", 100.0), ("e2", 250.5)], 350.5))
    c = save(store, ct("1.3", "9.9", [("e1", 100.0), ("e2", 250.5), ("e3", 12.25)], 362.75))
    assert a.new_event_uids == ["e1"] and b.new_event_uids == ["e2"] and c.new_event_uids == ["e3"]
    assert b.superseded == ["1.1"] and c.superseded == ["1.2"]
    totals = study_totals(store.db, "9.9")
    assert totals["ct_dlp_total_mGycm"] == 362.75
    assert totals["events"] == 3 and totals["reports"] == 1


def test_an_older_cumulative_report_arriving_late_changes_nothing(store):
    save(store, ct("1.3", "9.9", [("e1", 100.0), ("e2", 250.5)], 350.5))
    late = save(store, ct("1.1", "9.9", [("e1", 100.0)], 100.0))
    assert late.superseded_by == "1.3" and late.new_event_uids == []
    assert study_totals(store.db, "9.9")["ct_dlp_total_mGycm"] == 350.5


def test_resent_sop_instance_is_a_no_op(store):
    save(store, ct("1.1", "9.9", [("e1", 100.0)], 100.0))
    again = save(store, ct("1.1", "9.9", [("e1", 100.0)], 100.0))
    assert again.duplicate
    assert store.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1
    assert store.db.execute("SELECT status FROM receipts ORDER BY id DESC").fetchone()[0] == "duplicate"
    assert study_totals(store.db, "9.9")["ct_dlp_total_mGycm"] == 100.0


def test_continued_study_with_disjoint_events_adds_up(store):
    save(store, ct("2.1", "8.8", [("a1", 300.0), ("a2", 200.0)], 500.0))
    save(store, ct("2.2", "8.8", [("b1", 45.5)], 45.5))
    assert study_totals(store.db, "8.8")["ct_dlp_total_mGycm"] == 545.5


def test_partially_overlapping_reports_count_each_event_once(store):
    save(store, ct("3.1", "7.7", [("x", 100.0), ("y", 50.0)], 150.0))
    save(store, ct("3.2", "7.7", [("y", 50.0), ("z", 25.0)], 75.0))
    assert study_totals(store.db, "7.7")["ct_dlp_total_mGycm"] == 175.0


def test_studies_listing_has_no_patient_identity(store):
    r = ct("4.1", "6.6", [("q", 10.0)], 10.0)
    r.phi.patient_name, r.phi.patient_id = "Secret^Person", "PID-4711"
    save(store, r)
    listing = repr(list_studies(store.db))
    assert "Secret" not in listing and "PID-4711" not in listing


def test_overlapping_fluoroscopy_reports_count_no_dose_or_time_twice(store, corpus):
    """Two reports of one RF study sharing an event (a real Siemens report split 0-4 and 4-7, each
    keeping its stated totals): every total is at most what the eight distinct events hold."""
    import copy

    from agent.extract import extract_file

    whole = extract_file(corpus / "RF-RDSR-Siemens-Zee.dcm")
    first, second = copy.deepcopy(whole), copy.deepcopy(whole)
    first.sop_instance_uid, first.events = whole.sop_instance_uid + ".1", whole.events[:5]
    second.sop_instance_uid, second.events = whole.sop_instance_uid + ".2", whole.events[4:]
    save(store, first)
    save(store, second)
    totals = study_totals(store.db, whole.study_instance_uid)
    assert totals["events"] == 8 and totals["reports"] == 2
    # the events' own values (1.0 + 1.2 + 1.0 + 2.5 + 3.8 + 2.3 + 3.8 + 0.4 µGy·m²; 0.14 + ... + 0.06 mGy)
    assert totals["dap_total_Gym2"] == totals["fluoro_dap_total_Gym2"] == 1.6e-05
    assert totals["dose_rp_total_Gy"] == totals["fluoro_dose_rp_total_Gy"] == 0.00249
    assert totals["fluoro_time_total_s"] == 28.0  # no event states its duration: the largest stated total
    assert totals["acquisition_dap_total_Gym2"] == 0.0


def _fill(store, studies: int, reports_each: int = 2) -> None:
    """Reports received in turn (each study's second report after the other studies' first)."""
    with store.transaction() as tx:
        tx.execute("INSERT INTO receipts (id, received_at, origin, path, sha256, size_bytes, status) "
                   "VALUES (1, 'x', 'dicom', 'x.dcm', '0', 1, 'stored')")
        for n in range(reports_each * studies):
            study = n % studies
            tx.execute("INSERT INTO reports (sop_instance_uid, receipt_id, received_at, station, sop_class_uid, "
                       "study_instance_uid, kind, source, event_count, record) VALUES (?, 1, ?, 'ct1', 'c', ?, 'ct', "
                       "'rdsr', 0, '{}')", [f"sop-{n}", f"2026-11-02T09:{n // 600:02d}:{n % 600 / 10:04.1f}Z",
                                            f"study-{study}"])


def test_the_newest_studies_are_those_last_received_and_cost_the_same_in_a_store_of_any_size(tmp_path):
    """The console lists the newest 8 after every stored report: a sort of every study in the store made
    each report slower as the store grew (a year of a busy CT: 12 instead of 40 reports/s, C-STORE p99 350 ms).
    Counted in SQLite's virtual-machine steps, not in seconds."""
    from agent.store import Store

    steps = {}
    for size in (100, 2000):
        store = Store.open(tmp_path / f"{size}.sqlite")
        _fill(store, size)
        everything = [s["study_instance_uid"] for s in list_studies(store.db)]
        newest = [s["study_instance_uid"] for s in list_studies(store.db, 8)]
        assert newest == everything[:8] == [f"study-{size - 1 - n}" for n in range(8)]
        count = [0]

        def step():
            count[0] += 1

        store.db.conn.set_progress_handler(step, 100)
        list_studies(store.db, 8)
        store.db.conn.set_progress_handler(None, 0)
        steps[size] = count[0]
        store.close()
    assert steps[2000] < 2 * steps[100], steps


def test_reports_without_a_study_uid_are_each_a_study_with_their_own_totals(store):
    """Two reports of different patients that both lack a Study Instance UID were one row of the
    listing, with no dose at all (the totals were looked up WHERE study_instance_uid = NULL)."""
    save(store, ct("5.1", None, [("n1", 100.0)], 100.0))
    save(store, ct("5.2", None, [("n2", 40.0)], 40.0))
    save(store, ct("5.3", "5.5", [("n3", 7.0)], 7.0))
    for listing in (list_studies(store.db), list_studies(store.db, 8)):
        orphans = sorted((s["sop_instance_uid"], s["totals"].get("ct_dlp_total_mGycm"), s["report_count"])
                         for s in listing if s["study_instance_uid"] is None)
        assert orphans == [("5.1", 100.0, 1), ("5.2", 40.0, 1)]
        assert [s["totals"]["ct_dlp_total_mGycm"] for s in listing if s["study_instance_uid"] == "5.5"] == [7.0]
    assert len(list_studies(store.db, 2)) == 2


def dx(sop, study, source, uid, dap, kind="projection"):
    return Report(sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67", study_instance_uid=study,
                  series_instance_uid="1.2.4", kind=kind, modality="DX", source=source,
                  totals=Totals(dap_total_Gym2=dap),
                  events=[Event(irradiation_event_uid=uid, dap_Gym2=dap)])


def test_an_rdsr_after_the_images_of_its_study_replaces_their_header_doses(store):
    """A DX room sending its images and its RDSR: each exposure's DAP was counted twice (images' derived
    event UIDs are not the RDSR's), so the study showed double its dose."""
    save(store, dx("6.1", "6.9", "image-header", "h1", 2.0e-5))
    save(store, dx("6.2", "6.9", "image-header", "h2", 3.0e-5))
    assert study_totals(store.db, "6.9")["dap_total_Gym2"] == 5.0e-5  # until the RDSR, the images' doses
    rdsr = save(store, dx("6.3", "6.9", "rdsr", "r1", 5.0e-5))
    assert sorted(rdsr.superseded) == ["6.1", "6.2"]
    totals = study_totals(store.db, "6.9")
    assert totals["dap_total_Gym2"] == 5.0e-5 and totals["reports"] == 1


def test_images_after_their_studys_rdsr_add_no_dose_and_no_new_events(store):
    save(store, dx("7.1", "7.9", "rdsr", "r1", 5.0e-5))
    image = save(store, dx("7.2", "7.9", "image-header", "h1", 2.0e-5))
    assert image.superseded_by == "7.1" and image.new_event_uids == []
    assert study_totals(store.db, "7.9")["dap_total_Gym2"] == 5.0e-5


def test_a_structured_report_replaces_header_doses_of_its_own_kind_only(store):
    """A CT dose screen (secondary capture) and a projection RDSR in one study: different equipment, both count."""
    save(store, ct("8.1", "8.9", [("c1", 100.0)], 100.0))
    with store.transaction() as tx:
        tx.execute("UPDATE reports SET source = 'secondary-capture' WHERE sop_instance_uid = '8.1'")
    rdsr = save(store, dx("8.2", "8.9", "rdsr", "r1", 5.0e-5))
    assert rdsr.superseded == []
    totals = study_totals(store.db, "8.9")
    assert totals["ct_dlp_total_mGycm"] == 100.0 and totals["dap_total_Gym2"] == 5.0e-5


def test_a_radiopharmaceutical_report_sent_again_under_a_new_sop_uid_counts_its_activity_once(store, corpus):
    """A PET/CT study whose RRDSR came twice (a re-send under a new SOP Instance UID): the study showed
    788 MBq for one 394 MBq administration, as its Radiopharmaceutical Administration Event UID was not looked at."""
    import copy

    from agent.extract import extract_file

    pet = extract_file(corpus / "NM-RRDSR-Siemens.dcm")
    again = copy.deepcopy(pet)
    again.sop_instance_uid += ".2"
    save(store, extract_file(corpus / "NM-CT-RDSR-Siemens.dcm"))  # the CT of the same study
    save(store, pet)
    assert save(store, again).superseded == [pet.sop_instance_uid]
    totals = study_totals(store.db, pet.study_instance_uid)
    assert totals["administered_activity_MBq"] == 394.0 and totals["ct_dlp_total_mGycm"] == 667.72


def test_a_dose_report_without_event_uids_sent_again_under_a_new_sop_uid_counts_once(store, corpus):
    """A Philips CT dose screen (no irradiation event UIDs) that came twice under two SOP Instance UIDs (a
    re-send, a PACS re-export) showed the study's DLP doubled (2204.9 mGy·cm). The same dose content again
    is the same report; a second screen of the study with other series still adds up."""
    import copy

    from agent.extract import extract_file

    screen = extract_file(corpus / "CT-SC-Philips_Brilliance16P.dcm")
    again, other = copy.deepcopy(screen), copy.deepcopy(screen)
    again.sop_instance_uid += ".2"
    save(store, screen)
    saved = save(store, again)
    assert saved.superseded == [screen.sop_instance_uid] and saved.repeats == screen.sop_instance_uid
    assert study_totals(store.db, screen.study_instance_uid)["ct_dlp_total_mGycm"] == 1102.44609
    other.sop_instance_uid += ".3"  # the study continued: a screen of one more series
    other.events, other.totals.ct_dlp_total_mGycm, other.totals.ct_event_count = other.events[1:2], 196.01, 1
    assert save(store, other).superseded == []
    assert study_totals(store.db, screen.study_instance_uid)["ct_dlp_total_mGycm"] == 1298.45609


def test_an_rdsr_of_another_unit_leaves_the_images_doses(store):
    """One Study Instance UID, two rooms (a mobile unit's image, a room's RDSR): both doses count."""
    image, rdsr = dx("9.1", "9.9", "image-header", "h1", 2.0e-5), dx("9.2", "9.9", "rdsr", "r1", 5.0e-5)
    image.device.serial_number, rdsr.device.serial_number = "MOBILE-1", "ROOM-3"
    save(store, image)
    assert save(store, rdsr).superseded == []
    assert study_totals(store.db, "9.9")["dap_total_Gym2"] == pytest.approx(7.0e-5)


def test_events_without_a_uid_are_counted_in_the_studys_totals(store, corpus):
    """A Philips CT dose screen (4 series, no irradiation event UIDs) and a DX image without an acquisition time
    were listed by `alara-edge studies` with "events 0" beside their DLP and DAP: only events with a UID counted."""
    from agent.extract import extract_file

    screen = extract_file(corpus / "CT-SC-Philips_Brilliance16P.dcm")
    image = extract_file(corpus / "DX-Im-DRGEM.dcm")
    save(store, screen)
    save(store, image)
    events = {s["study_instance_uid"]: s["totals"]["events"] for s in list_studies(store.db)}
    assert events == {screen.study_instance_uid: 4, image.study_instance_uid: 1}
