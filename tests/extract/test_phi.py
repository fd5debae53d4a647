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

NAME, PATIENT_ID, BIRTH, OTHER_ID = "Sentinel^Leak", "PHI-LEAK-4711", "19010203", "PHI-OTHER-4712"
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
    assert set(with_phi) <= {"patient_id", "patient_name", "birth_date", "other_patient_ids"}


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_planted_identity_never_leaks(path):
    """Unique values planted in the patient attributes appear only with include_phi."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    ds.OtherPatientIDs = OTHER_ID
    if "OtherPatientIDsSequence" in ds:
        del ds.OtherPatientIDsSequence
    buffer = io.BytesIO()
    ds.save_as(buffer)
    try:
        rep = _extract(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    except Rejected:
        return
    plain = json.dumps(rep.to_dict())
    for value in (NAME, PATIENT_ID, BIRTH, "1901-02-03", "Sentinel", OTHER_ID):
        assert value not in plain
    assert rep.to_dict(include_phi=True)["phi"] == \
        {"patient_id": PATIENT_ID, "patient_name": NAME, "birth_date": "1901-02-03", "other_patient_ids": [OTHER_ID]}


def _completed_months(birth: str, study: str) -> int:
    b, s = (int(birth[:4]), int(birth[4:6]), int(birth[6:8])), (int(study[:4]), int(study[5:7]), int(study[8:10]))
    return (s[0] - b[0]) * 12 + s[1] - b[1] - (s[2] < b[2])


@pytest.mark.parametrize("path", [p for p in corpus_files() if len(str(pydicom.dcmread(p, stop_before_pixels=True)
                                                                       .get("PatientBirthDate") or "")) == 8],
                         ids=lambda p: p.name)
def test_the_age_does_not_give_away_the_birth_date(path):
    """Without Patient's Age the age comes from the birth date: as completed years (whole months under
    2), never as days / 365.25, which with the study date sent beside it gave the birth date back
    (10 of 12 such corpus files, exactly)."""
    ds = pydicom.dcmread(path)
    if "PatientAge" in ds:
        del ds.PatientAge
    try:
        rep = _extract(ds)
    except Rejected:
        pytest.skip("not a dose object")
    if rep.patient.age_years is None or rep.study.datetime is None:
        pytest.skip("no age or no study date")
    months = _completed_months(str(ds.PatientBirthDate), rep.study.datetime)
    if months < 0:
        pytest.skip("born after the study (an anonymiser's dates): the age is the report's own")
    assert rep.patient.age_years == (months // 12 if months >= 24 else months / 12)


@pytest.mark.parametrize("birth, age", [("20240101", 5 / 12), ("20240601", 0.0), ("20220615", 2.0),
                                        ("20220616", 23 / 12), ("19520314", 72.0), ("19520616", 71.0)])
def test_ages_are_whole_years_from_two_on_and_whole_months_below(birth, age):
    from agent.extract.common import Notes, age_years

    ds = pydicom.Dataset()
    ds.PatientBirthDate = birth
    assert age_years(ds, "2024-06-15T10:00:00", Notes()) == pytest.approx(age)


def test_a_birth_date_written_day_first_is_known_so_its_copies_are_removed():
    """PatientBirthDate "31.01.1980" (not a DA) left the birth date unknown, and the description's copy was sent."""
    from agent.phi import pattern, redact
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head")], description="RF 31.01.1980")
    ds.PatientBirthDate = "31.01.1980"
    report = _extract(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert report.phi.birth_date == "1980-01-31"
    assert redact(report.study.description, pattern(report.phi)) == "RF [removed]"


@pytest.mark.parametrize("dates", ["content date", "start of irradiation", "none"])
def test_the_age_comes_from_another_date_of_the_study_when_study_date_is_empty(dates):
    """Study Date is type 2: empty, a child's report counted as an adult's (no paediatric level applied), unwarned."""
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head")], patient=rdsr.Patient(birth_date="20220601", age=""))
    ds.StudyDate = ""
    for keyword in ("SeriesDate", "AcquisitionDate", "ContentDate"):
        if keyword in ds:
            delattr(ds, keyword)
    if dates == "content date":
        ds.ContentDate = "20261102"
    if dates != "start of irradiation":  # the SR's own row (TID 10011) holds the date of the first exposure
        start = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "113809")
        ds.ContentSequence.remove(start)
    report = _extract(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    if dates == "none":
        assert report.patient.age_years is None
        assert "the patient's birth date is stated but no date of the study: the age is unknown" in report.warnings
    else:
        assert report.patient.age_years == 4.0
