"""Patient identity (name, id, birth date) never appears in a record's JSON unless asked for."""
from __future__ import annotations

import io
import json
import warnings

import pydicom
import pytest

from agent.extract import extract_dataset
from agent.extract.record import Rejected
from tests.extract.conftest import corpus_files

NAME, PATIENT_ID, BIRTH = "Sentinel^Leak", "PHI-LEAK-4711", "19010203"
# header attributes that may legitimately repeat a patient field in a test file (phantom studies
# reuse the patient id as accession number, anonymisers write the same placeholder everywhere)
_NOT_PATIENT = ("AccessionNumber", "StationName", "InstitutionName", "StudyDescription", "DeviceSerialNumber",
                "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyID", "ProtocolName")


def _extract(ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_dataset(ds)


def _header_phi(ds) -> dict[str, str]:
    values = {k: str(ds.get(k) or "").strip() for k in ("PatientName", "PatientID", "PatientBirthDate")}
    values = {k: v for k, v in values.items() if len(v) >= 4}
    if "PatientBirthDate" in values:  # the record writes dates in ISO form
        b = values["PatientBirthDate"]
        values["PatientBirthDate (ISO)"] = f"{b[:4]}-{b[4:6]}-{b[6:8]}"
    shared = {str(ds.get(k) or "").strip() for k in _NOT_PATIENT}
    shared |= {f"{d[:4]}-{d[4:6]}-{d[6:8]}" for d in shared if len(d) == 8 and d.isdigit()}
    return {k: v for k, v in values.items() if v not in shared and not any(v in s for s in shared if s)}


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_no_patient_identity_in_the_record(path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    try:
        rep = _extract(ds)
    except Rejected:
        return
    text = json.dumps(rep.to_dict(), ensure_ascii=False)
    assert '"phi"' not in text
    for attribute, value in _header_phi(ds).items():
        assert value not in text, f"{attribute} of the header appears in the record"
    with_phi = rep.to_dict(include_phi=True)["phi"]
    assert set(with_phi) <= {"patient_id", "patient_name", "birth_date"}


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_planted_identity_never_leaks(path):
    """Unique values planted in the patient attributes appear only with include_phi."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    buffer = io.BytesIO()
    ds.save_as(buffer)
    try:
        rep = _extract(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    except Rejected:
        return
    plain = json.dumps(rep.to_dict())
    for value in (NAME, PATIENT_ID, BIRTH, "1901-02-03", "Sentinel"):
        assert value not in plain
    assert rep.to_dict(include_phi=True)["phi"] == \
        {"patient_id": PATIENT_ID, "patient_name": NAME, "birth_date": "1901-02-03"}
