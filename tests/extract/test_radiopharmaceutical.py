"""Radiopharmaceutical Radiation Dose SR (TID 10021), values as the files state them."""
from __future__ import annotations

import io

import pydicom

from agent.extract import extract_dataset
from tests.conftest import CORPUS


def test_rrdsr_administration(report):
    rep = report("NM-RRDSR-Siemens.dcm")
    assert (rep.kind, rep.modality, rep.source, rep.template, rep.events) == \
        ("radiopharmaceutical", "PT", "rdsr", "10021", [])
    assert rep.totals.administered_activity_MBq == 394.0
    (admin,) = rep.administrations
    assert (admin.event_uid, admin.radiopharmaceutical, admin.radionuclide, admin.half_life_s) == \
        ("1.3.12.2.1107.5.1.4.11090.20220224104830.0", "Fluorodeoxyglucose F^18^", "^18^Fluorine", 6586.2)
    assert (admin.datetime_started, admin.activity_MBq, admin.route, admin.effective_dose_mSv) == \
        ("2022-02-24T10:40:30", 394.0, "Intravenous route", 7.486)
    assert len(admin.organ_doses) == 22
    bladder = next(o for o in admin.organ_doses if o.organ == "Bladder")
    assert bladder.dose_mGy == 51.22
    assert next(o for o in admin.organ_doses if o.organ == "Kidney").laterality == "both"
    assert rep.study.procedure_reported == "PET study for localization of tumor"


def test_rrdsr_extended_measured_activities(report):
    (admin,) = report("NM-RRDSR-Siemens-Extended.dcm").administrations
    assert (admin.activity_MBq, admin.pre_administration_activity_MBq, admin.post_administration_activity_MBq,
            admin.effective_dose_mSv) == (250.0, 11.0, 12.0, 4.75)
    assert next(o for o in admin.organ_doses if o.organ == "Uterus").dose_mGy == 4.5


def test_patient_characteristics_from_the_sr_when_the_header_has_none():
    ds = pydicom.dcmread(CORPUS / "NM-RRDSR-Siemens.dcm")
    for keyword in ("PatientAge", "PatientSex", "PatientWeight", "PatientSize", "PatientBirthDate"):
        if keyword in ds:
            delattr(ds, keyword)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert (rep.patient.age_years, rep.patient.sex, rep.patient.weight_kg, rep.patient.height_m) == \
        (63.0, "M", 110.0, 1.78)
