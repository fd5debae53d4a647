"""Which reader an object goes to, and what happens to objects that claim more than they hold."""
from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from agent.extract import extract_dataset
from agent.extract.record import ExtractionError, Rejected
from tests.conftest import CORPUS


def _roundtrip(ds) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _rdsr(name="CT-RDSR-Siemens-Multi-2.dcm"):
    return pydicom.dcmread(CORPUS / name)


def test_patient_radiation_dose_sr_is_rejected_with_a_reason():
    ds = _rdsr()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.73"
    with pytest.raises(Rejected, match="Patient Radiation Dose SR"):
        extract_dataset(_roundtrip(ds))


def test_dose_sr_with_an_unknown_document_title_is_an_error_not_a_rejection():
    ds = _rdsr()
    ds.ConceptNameCodeSequence[0].CodeValue = "999999"
    ds.ConceptNameCodeSequence[0].CodeMeaning = "Something"
    with pytest.raises(ExtractionError, match="unknown document title"):
        extract_dataset(_roundtrip(ds))


@pytest.mark.parametrize("name", ["CT-RDSR-Siemens-Multi-2.dcm", "RF-RDSR-Philips_Allura.dcm"])
def test_an_enhanced_xray_radiation_dose_sr_is_read_by_its_content(name):
    ds = _rdsr(name)
    expected = extract_dataset(_roundtrip(ds)).to_dict()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.76"
    got = extract_dataset(_roundtrip(ds)).to_dict()
    assert got.pop("sop_class_uid") == "1.2.840.10008.5.1.4.1.1.88.76"
    expected.pop("sop_class_uid")
    assert got == expected and got["source"] == "rdsr" and got["events"]
    ds.ConceptNameCodeSequence[0].CodeValue = "999999"  # a dose report by its class: unreadable content is an error
    ds.ConceptNameCodeSequence[0].CodeMeaning = "Something"
    with pytest.raises(ExtractionError, match="Enhanced X-Ray Radiation Dose SR with an unknown document title"):
        extract_dataset(_roundtrip(ds))


def test_an_enhanced_dose_report_template_is_read_only_where_it_holds_the_known_content():
    ds = _rdsr()
    ds.ContentTemplateSequence[0].TemplateIdentifier = "10040"  # TID 10040, Enhanced X-Ray Radiation Dose
    rep = extract_dataset(_roundtrip(ds))
    assert rep.template == "10011" and rep.events and rep.totals.ct_dlp_total_mGycm is not None
    assert "template 10040 (Enhanced X-Ray Radiation Dose) declared: read as 10011 by its content" in rep.warnings
    # its own containers only (TID 10041-10043): an error kept for inspection, not an empty CT record
    ds.ContentSequence = Sequence([item for item in ds.ContentSequence if item.ValueType != "CONTAINER"])
    with pytest.raises(ExtractionError, match=r"TID 10040\) without TID 10001 or 10011 content"):
        extract_dataset(_roundtrip(ds))


def test_dose_report_without_dose_content_is_an_error():
    ds = _rdsr()
    ds.ContentSequence = Sequence([item for item in ds.ContentSequence
                                   if item.ConceptNameCodeSequence[0].CodeValue in ("121005", "121012")])
    del ds.ContentTemplateSequence
    with pytest.raises(ExtractionError, match="neither CT nor projection"):
        extract_dataset(_roundtrip(ds))


def test_dose_report_with_no_content_at_all_is_an_error():
    ds = _rdsr()
    del ds.ContentSequence
    with pytest.raises(ExtractionError, match="no content"):
        extract_dataset(_roundtrip(ds))


def test_declared_template_contradicted_by_the_content():
    ds = _rdsr()
    ds.ContentTemplateSequence[0].TemplateIdentifier = "10001"
    rep = extract_dataset(_roundtrip(ds))
    assert (rep.kind, rep.template, rep.totals.ct_dlp_total_mGycm) == ("ct", "10011", 77.27)
    assert any("template 10001 declared" in w for w in rep.warnings)


def test_object_without_identity_is_an_error():
    ds = _rdsr()
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    with pytest.raises(ExtractionError, match="SOP Instance UID"):
        extract_dataset(_roundtrip(ds))
    with pytest.raises(ExtractionError, match="SOP Class UID"):
        extract_dataset(Dataset())


def test_secondary_capture_with_dose_only_in_pixels_is_rejected():
    ds = pydicom.dcmread(CORPUS / "CT-SC-Philips_Brilliance16P.dcm")
    del ds.ExposureDoseSequence
    with pytest.raises(Rejected, match="only in the pixels"):
        extract_dataset(_roundtrip(ds))
