"""The console's study rows (``recent_studies``): the key doses of what is stored, as the store counts them."""
from agent.console.views import recent_studies
from agent.extract import extract_file
from agent.store.reports import Receipt, save_report


def save(store, report):
    receipt = Receipt(received_at="2026-11-02T09:00:00.000000Z", origin="dicom", path="x.dcm", sha256="0", size_bytes=1)
    with store.transaction() as tx:
        save_report(tx, report, receipt, "ct1")


def shown(store):
    return [{d["label"]: d["display"] for d in s["doses"]} for s in recent_studies(store.db)]


def test_a_ct_dose_screen_shows_its_highest_ctdivol(store, corpus):
    """A CT that sends only its dose screen (series without irradiation event UIDs): the console showed
    "CTDIvol max –" although the screen states each series' CTDIvol (the highest 11.33 mGy)."""
    save(store, extract_file(corpus / "CT-SC-Philips_Brilliance16P.dcm"))
    assert shown(store) == [{"CTDIvol max": "11.32941264247715", "DLP": "1102.44609"}]


def test_a_pet_ct_study_shows_its_administered_activity_beside_the_ct_doses(store, corpus):
    """A PET/CT study (the CT's RDSR and the radiopharmaceutical RRDSR): the console's row was that of a CT study
    and left out the 394 MBq administered (alara-edge studies listed it)."""
    save(store, extract_file(corpus / "NM-CT-RDSR-Siemens.dcm"))
    save(store, extract_file(corpus / "NM-RRDSR-Siemens.dcm"))
    assert shown(store) == [{"CTDIvol max": "4.59", "DLP": "667.72", "Activity": "394"}]


def test_an_angiography_ct_study_shows_the_dap_beside_the_ct_doses(store, corpus):
    ct = extract_file(corpus / "CT-RDSR-Philips_BigBore4DCT.dcm")
    xa = extract_file(corpus / "RF-RDSR-Philips_Allura.dcm")
    xa.study_instance_uid = ct.study_instance_uid  # one study of a room with both
    save(store, ct)
    save(store, xa)
    (row,) = shown(store)
    assert row["DLP"] == "541.1" and row["DAP"] == "1.5356864017" and row["Ka,r"] == "4.27128035068"


def test_set_aside_shows_a_days_unchecked_dose_reports_and_counts_the_non_dose_objects(store):
    """What the page lists: the day's unreadable reports and re-used UIDs with other doses, newest first, with no
    path (exports are named after patients); non-dose objects only counted, however many a router left."""
    from agent.console.views import set_aside
    from agent.store.reports import record_receipt

    def receipt(at: str, status: str, n: int, sop_class: str = "1.2.840.10008.5.1.4.1.1.2", ae: str = "ROUTER") -> None:
        r = Receipt(received_at=at, origin="dicom", path=f"/srv/failed/Testperson_Erika_{n}.dcm", sha256=str(n),
                    size_bytes=1, calling_ae=ae, sop_class_uid=sop_class)
        with store.transaction() as tx:
            record_receipt(tx, r, status, "the reason")

    rdsr = "1.2.840.10008.5.1.4.1.1.88.67"
    for n in range(300):  # yesterday's and today's slices, a few stored reports between them
        receipt(f"2026-11-0{1 + n // 150}T{n % 24:02d}:00:00.000000Z", "stored" if n % 7 == 0 else "rejected", n)
    receipt("2026-11-01T23:00:00.000000Z", "error", 300, rdsr, "CT1")  # before the window
    receipt("2026-11-02T08:00:00.000000Z", "error", 301, rdsr, "CT1")
    receipt("2026-11-02T09:00:00.000000Z", "duplicate_differs", 302, rdsr, "CT2")
    receipt("2026-11-02T09:30:00.000000Z", "error", 303, None, None)
    since = "2026-11-02T00:00:00.000000Z"
    shown = set_aside(store.db, since)
    assert [(i["sender"], i["what"], i["status"]) for i in shown["items"]] == [
        (None, "unreadable object", "error"), ("CT2", "X-Ray Radiation Dose SR", "duplicate_differs"),
        ("CT1", "X-Ray Radiation Dose SR", "error")]
    assert shown["total"] == 3 and "Testperson" not in str(shown)
    (expected,) = store.db.execute(
        "SELECT COUNT(*) FROM receipts WHERE status = 'rejected' AND received_at >= ?", [since]).fetchone()
    assert shown["rejected"] == expected == 129
    assert set_aside(store.db, "2026-11-03T00:00:00.000000Z") == {
        "since": "2026-11-03T00:00:00.000000Z", "items": [], "total": 0, "rejected": 0}
    assert set_aside(store.db, "2026-11-01T00:00:00.000000Z")["rejected"] == 257
