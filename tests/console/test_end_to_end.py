"""Real DICOM on loopback → checks → console, in Chromium: what the technologist sees."""
import threading
import time

from playwright.sync_api import expect

from agent.sources.dicom.scu import send
from simulator import rdsr
from tests.conftest import REPO
from tests.console.conftest import screenshot


def head_ct(accession: str, ctdivol: str = "120.0") -> object:
    """A CT head report whose CTDIvol is above the AAPM notification value for an adult head (80 mGy)."""
    return rdsr.ct_report([rdsr.CTSeries("Head routine", "Head", ctdivol=ctdivol, dlp="1900.0")],
                          accession=accession, description="CT Head",
                          patient=rdsr.Patient(name="Testperson^Erika", id="PID-E2E"))


def test_cstore_of_a_high_dose_report_raises_the_banner_and_the_ack_goes_out(station, page):
    s = station(dicom=True)
    page.goto(s.url + "/")
    page.wait_for_selector("#live.on")

    sender = threading.Thread(target=send, args=([head_ct("E2E0001")], "127.0.0.1", s.agent.dicom.port))
    t0 = time.perf_counter()
    sender.start()
    page.wait_for_selector("#banner [data-alert-id]", state="visible", timeout=5000)
    delay = time.perf_counter() - t0
    sender.join()
    print(f"C-STORE started → banner visible: {delay * 1000:.0f} ms")
    assert delay <= 3.0
    banner = page.inner_text("#banner")
    assert "E2E0001" in banner and "120 mGy" in banner and "80 mGy" in banner
    row = page.locator("#studies tbody tr", has_text="E2E0001")
    expect(row.locator(".dose", has_text="CTDIvol max 120 mGy")).to_have_class("dose level-warning")
    expect(row.locator(".dose", has_text="DLP 1900 mGy·cm")).to_be_visible()
    assert "Testperson" not in page.content()  # accession number and exam, never the patient's name
    screenshot(page, "cstore-alert-800x480")

    page.click("#banner button.ack")
    page.fill("#ack-by", "RT42")
    page.check("#ack-reasons input[value='large patient']")
    page.click("#ack-submit")
    page.wait_for_selector("#banner", state="hidden", timeout=20_000)
    (alert_body,) = s.outbox("alert")
    (ack_body,) = s.outbox("ack")
    assert ack_body["alert_id"] == alert_body["id"] and (ack_body["by"], ack_body["reason"]) == ("RT42", "large patient")


def test_patient_names_only_when_configured(station):
    s = station(dicom=True, show_patient_names=True)
    assert send([head_ct("E2E0002", ctdivol="40.0")], "127.0.0.1", s.agent.dicom.port) == [0]
    (study,) = s.request("/api/state")[2]["studies"]
    assert study["patient_name"] == "Testperson Erika" and study["accession_number"] == "E2E0002"
    assert [d["level"] for d in study["doses"]] == ["none", "none"]  # no alert, no DRL table configured


def test_without_names_a_description_holding_the_name_is_shown_redacted(station):
    s = station(dicom=True)
    report = rdsr.ct_report([rdsr.CTSeries("Head routine", "Head", ctdivol="40.0", dlp="700.0")], accession="E2E0003",
                            description="CT Head Testperson 01.01.1970",
                            patient=rdsr.Patient(name="Testperson^Erika", id="PID-E2E", birth_date="19700101"))
    assert send([report], "127.0.0.1", s.agent.dicom.port) == [0]
    (study,) = s.request("/api/state")[2]["studies"]
    assert study["exam"] == "CT Head [removed] [removed]" and "patient_name" not in study


def test_key_doses_are_coloured_against_the_configured_drl(station):
    """UK NDRL 2024 adult CT head: CTDIvol 47 mGy, DLP 790 mGy·cm (shipped example table)."""
    table = str(REPO / "config" / "reference-levels" / "uk-ukhsa-2024-adult-ct.toml")
    s = station(dicom=True, checks={"tables": [table]})
    below = rdsr.ct_report([rdsr.CTSeries("Head routine", "Head", ctdivol="46.99", dlp="790.0")], accession="DRL1",
                           description="CT Head")
    assert send([below], "127.0.0.1", s.agent.dicom.port) == [0]
    (study,) = s.request("/api/state")[2]["studies"]
    ctdi, dlp = study["doses"]
    assert (ctdi["display"], ctdi["level"]) == ("46.99", "ok") and "DRL 47 mGy" in ctdi["reference"]
    assert (dlp["display"], dlp["level"]) == ("790", "above")  # at the DRL: an info alert for review
    assert study["level"] == "info"


def test_a_radiograph_whose_report_states_no_dap_says_so_in_the_studies_table(station):
    """Its key-doses cell was empty, which reads as "not loaded yet" rather than "not stated"."""
    from tests.conftest import CORPUS

    s = station()
    assert s.agent.pipeline.ingest((CORPUS / "DX-RDSR-Canon_CXDI_noDAP.dcm").read_bytes(), "test").status == "stored"
    (study,) = s.request("/api/state")[2]["studies"]
    assert [(d["label"], d["display"]) for d in study["doses"]] == [("DAP", "–")]


def test_healthz_is_503_when_dicom_stops_listening(station):
    s = station(dicom=True)
    status, _, health = s.request("/healthz")
    assert status == 200 and health["parts"]["dicom"]["ok"] is True
    assert health["parts"]["dicom"]["port"] == s.agent.dicom.port
    s.agent.dicom.stop()
    status, _, health = s.request("/healthz")
    assert status == 503 and health["parts"]["dicom"]["ok"] is False


def test_a_description_is_redacted_even_when_the_studys_first_report_names_nobody(station):
    """Two reports of one study: the first without patient attributes, the second with them and a
    description that holds them. The identity is the one the store has, whichever report has it."""
    s = station(dicom=True)
    study_uid = "1.2.826.0.1.3680043.10.99.77"
    blank = rdsr.ct_report([rdsr.CTSeries("Head", "Head", ctdivol="40.0", dlp="700.0")], accession="E2E0004",
                           description="Head", study_uid=study_uid, patient=rdsr.Patient(name="", id="", birth_date=""))
    named = rdsr.ct_report([rdsr.CTSeries("Head", "Head", ctdivol="41.0", dlp="710.0")], accession="E2E0004",
                           description="CT Brown Alice MRN777", study_uid=study_uid,
                           patient=rdsr.Patient(name="Brown^Alice", id="MRN777", birth_date="19700101"))
    assert send([blank, named], "127.0.0.1", s.agent.dicom.port) == [0, 0]
    (study,) = s.request("/api/state")[2]["studies"]
    assert "Brown" not in study["exam"] and "MRN777" not in study["exam"]
