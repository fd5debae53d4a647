"""Dose reports set aside unchecked, on the page: an unreadable one (or a stored SOP Instance UID with other doses)
was kept in failed/ and published as ``receipt_failed``, which nothing on the console heard: the technologist never
learnt that no dose check ran for the exam.  Non-dose objects a router forwards are only counted."""
import sqlite3
import threading
import time

from playwright.sync_api import expect
from pydicom.uid import generate_uid

from agent.sources.dicom.scu import send
from simulator import rdsr
from tests.console.conftest import screenshot
from tests.console.test_alerts import raise_alert
from tests.console.test_page import open_console

NAME, PATIENT_ID = "Testperson^Erika", "PID-ASIDE-4711"


def corrupt_rdsr(accession: str = "ASIDE1"):
    """An X-Ray Radiation Dose SR without its content tree: it cannot be read, so no dose check runs."""
    ds = rdsr.ct_report([rdsr.CTSeries("Head")], accession=accession, description=f"CT Head {NAME}",
                        patient=rdsr.Patient(name=NAME, id=PATIENT_ID, birth_date="19700101"))
    del ds.ContentSequence
    return ds


def ct_image():
    """A CT slice a router forwards with the study: not a dose object."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = NAME, PATIENT_ID
    return ds


def no_patient_identifier(page) -> None:
    for text in (page.content(), page.inner_text("body")):
        for identifier in ("Testperson", "Erika", PATIENT_ID, "19700101", "failed/", ".dcm"):
            assert identifier not in text, identifier


def test_a_corrupt_rdsr_sent_over_dicom_shows_on_the_open_page_within_a_second(station, page):
    s = station(dicom=True)
    open_console(page, s)
    expect(page.locator("#set-aside")).to_be_hidden()

    sender = threading.Thread(target=send, args=([corrupt_rdsr()], "127.0.0.1", s.agent.dicom.port),
                              kwargs={"calling_ae": "CT1"})
    t0 = time.perf_counter()
    sender.start()
    row = page.locator("#set-aside-list .item.error")
    row.wait_for(state="visible", timeout=5000)
    delay = time.perf_counter() - t0
    sender.join()
    print(f"C-STORE started → set-aside row visible: {delay * 1000:.0f} ms")
    assert delay <= 1.0
    text = row.inner_text()
    assert "CT1" in text and "X-Ray Radiation Dose SR could not be read" in text and "tell the physicist" in text
    (receipt,) = sqlite3.connect(s.cfg.store.path).execute(
        "SELECT reason FROM receipts WHERE status = 'error'").fetchall()
    button = row.locator("button")
    button.focus()
    page.keyboard.press("Enter")  # the whole reason, by keyboard (or a tap)
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(row.locator(".reason")).to_have_text(receipt[0])
    assert page.locator("#set-aside button.ack").count() == 0  # information: nothing to acknowledge
    no_patient_identifier(page)
    assert not page.errors


def test_a_rejected_image_only_counts_and_a_reload_or_restart_keeps_both(station, page):
    s = station(dicom=True)
    open_console(page, s)
    assert send([ct_image()], "127.0.0.1", s.agent.dicom.port, calling_ae="ROUTER") == [0]
    chip = page.locator('#health [data-part="rejected"]')
    expect(chip).to_have_text("1 non-dose object set aside (24 h)")
    assert send([ct_image(), ct_image()], "127.0.0.1", s.agent.dicom.port, calling_ae="ROUTER") == [0, 0]
    expect(chip).to_have_text("3 non-dose objects set aside (24 h)")
    expect(page.locator("#set-aside")).to_be_hidden()  # never as rows
    assert "ROUTER" not in page.inner_text("body")

    assert send([corrupt_rdsr()], "127.0.0.1", s.agent.dicom.port, calling_ae="CT1") == [0]
    expect(page.locator("#set-aside-list .item")).to_have_count(1)
    page.reload()
    page.wait_for_selector("#live.on")
    expect(page.locator("#set-aside-list .item.error")).to_contain_text("CT1")
    expect(chip).to_have_text("3 non-dose objects set aside (24 h)")

    s.console.stop()
    page.wait_for_selector("#live.off", timeout=5000)
    s.replace_console()  # what it shows is read from the store
    page.wait_for_selector("#live.on", timeout=20_000)
    expect(page.locator("#set-aside-list .item.error")).to_contain_text("X-Ray Radiation Dose SR could not be read")
    expect(chip).to_have_text("3 non-dose objects set aside (24 h)")
    no_patient_identifier(page)


def test_at_800x480_the_alerts_stay_first_and_everything_set_aside_can_be_reached(station, page):
    s = station(dicom=True)
    raise_alert(s)
    raise_alert(s, severity="warning")
    assert send([corrupt_rdsr(f"ASIDE{n}") for n in range(4)] + [ct_image()], "127.0.0.1", s.agent.dicom.port,
                calling_ae="CT1") == [0] * 5
    open_console(page, s)
    expect(page.locator("#banner .item")).to_have_count(2)
    expect(page.locator("#set-aside-list .item")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollHeight") <= 480
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    banner, first = page.locator("#banner").bounding_box(), page.locator("#set-aside-list .item").bounding_box()
    assert banner["y"] + banner["height"] <= first["y"]  # the alerts first
    for selector in ("#banner .item button.ack", "#set-aside-list .item button", "#set-aside button.more"):
        box = page.locator(selector).first.bounding_box()
        assert box["y"] + box["height"] <= 480 and box["height"] >= 40, selector
    screenshot(page, "set-aside-800x480")
    more = page.locator("#set-aside button.more")
    expect(more).to_have_text("+ 3 more not checked: show all")
    more.click()
    expect(page.locator("#set-aside-list .item")).to_have_count(4)
    expect(page.locator("#set-aside-list .item").last).to_contain_text("could not be read")
    screenshot(page, "set-aside-all-800x480")
    page.locator("#set-aside button.more").click()
    expect(page.locator("#set-aside-list .item")).to_have_count(1)
    no_patient_identifier(page)


def test_a_stored_uid_sent_again_with_other_doses_shows_live_with_what_differs(station, page, corpus):
    import pydicom

    s = station(dicom=True)
    original = pydicom.dcmread(corpus / "RF-RDSR-Siemens-Zee.dcm")
    assert send([original], "127.0.0.1", s.agent.dicom.port, calling_ae="RF1") == [0]
    open_console(page, s)
    corrected = pydicom.dcmread(corpus / "RF-RDSR-Siemens-Zee.dcm")
    event = next(i for i in corrected.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "113706")
    dap = next(i for i in event.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "122130")
    dap.MeasuredValueSequence[0].NumericValue = "0.0002"
    assert send([corrected], "127.0.0.1", s.agent.dicom.port, calling_ae="RF1") == [0]
    row = page.locator("#set-aside-list .item.duplicate_differs")
    expect(row).to_contain_text("RF1 · X-Ray Radiation Dose SR came again under a stored UID with other doses")
    expect(row.locator(".reason")).to_contain_text("events.dap_Gym2 (1 of 8)")
    html = page.content()
    for identifier in (str(original.get("PatientName", "")), str(original.get("PatientID", ""))):
        assert not identifier or identifier not in html
    assert original.SOPInstanceUID not in html
