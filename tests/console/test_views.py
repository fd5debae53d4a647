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
