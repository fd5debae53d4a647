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


def _rrdsr_with_patient_characteristics(*items):
    """A minimal standard RRDSR (TID 10021, one administration) whose header states no age or sex,
    with the given rows of its Patient Characteristics (TID 10023)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from simulator.rdsr import _code, container, num

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.68"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.StudyDate, ds.Modality = generate_uid(), "20260315", "SR"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("113500", "DCM", "Radiopharmaceutical Radiation Dose Report")])
    ds.ContentSequence = Sequence([
        container(("113502", "DCM", "Radiopharmaceutical Administration"), [
            num(("113507", "DCM", "Administered activity"), "20", ("MBq", "UCUM", "MBq"))]),
        container(("121118", "DCM", "Patient Characteristics"), list(items)),
    ])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))


def test_subject_sex_codes_other_than_male_and_female_are_not_a_digit():
    from simulator.rdsr import code

    def sex(value, meaning):
        rep = _rrdsr_with_patient_characteristics(
            code(("121032", "DCM", "Subject Sex"), (value, "DCM", meaning)))
        return rep.patient.sex

    assert (sex("M", "Male"), sex("F", "Female")) == ("M", "F")
    assert sex("121102", "Other sex") == "O"  # CID 7455; Patient's Sex (0010,0040) says O
    assert sex("121104", "Ambiguous sex") == "O"
    assert (sex("121103", "Undetermined sex"), sex("U", "Unknown sex")) == (None, None)


def test_a_newborns_subject_age_in_hours_is_read():
    from simulator.rdsr import num

    rep = _rrdsr_with_patient_characteristics(num(("121033", "DCM", "Subject Age"), "36", ("h", "UCUM", "hour")))
    assert rep.patient.age_years == 0.0  # CID 7456 allows h and min: 36 hours is 0 completed months
    assert not [w for w in rep.warnings if "Subject Age" in w]


def test_without_a_study_date_the_study_is_dated_by_its_first_administration():
    from pydicom.sequence import Sequence

    from simulator.rdsr import _code, container, num

    def administration(start):
        item = container(("113502", "DCM", "Radiopharmaceutical Administration"), [
            num(("113507", "DCM", "Administered activity"), "185", ("MBq", "UCUM", "MBq"))])
        stamp = pydicom.Dataset()
        stamp.RelationshipType, stamp.ValueType, stamp.DateTime = "CONTAINS", "DATETIME", start
        stamp.ConceptNameCodeSequence = Sequence([_code("123003", "DCM", "Radiopharmaceutical Start DateTime")])
        item.ContentSequence.append(stamp)
        return item

    ds = pydicom.dcmread(CORPUS / "NM-RRDSR-Siemens.dcm")
    ds.StudyDate, ds.StudyTime = "", ""  # type 2: present, empty
    ds.ContentSequence = Sequence([administration("20260315091500"), administration("20260315141500")])
    rep = extract_dataset(ds)
    assert rep.study.datetime == "2026-03-15T09:15:00"


def test_a_total_activity_missing_an_administrations_activity_says_it_may_be_partial():
    from pydicom.sequence import Sequence

    from simulator.rdsr import _code, container, num

    unknown = num(("113507", "DCM", "Administered activity"), "0", ("MBq", "UCUM", "MBq"))
    unknown.MeasuredValueSequence = Sequence([])  # an empty value, with the reason why
    unknown.NumericValueQualifierCodeSequence = Sequence([_code("114006", "DCM", "Measurement failure")])
    ds = pydicom.dcmread(CORPUS / "NM-RRDSR-Siemens.dcm")
    ds.ContentSequence = Sequence([
        container(("113502", "DCM", "Radiopharmaceutical Administration"),
                  [num(("113507", "DCM", "Administered activity"), "350", ("MBq", "UCUM", "MBq"))]),
        container(("113502", "DCM", "Radiopharmaceutical Administration"), [unknown]),
    ])
    rep = extract_dataset(ds)
    assert [a.activity_MBq for a in rep.administrations] == [350.0, None]
    assert rep.totals.administered_activity_MBq == 350.0
    assert any("stated for 1 of the 2 administrations" in w for w in rep.warnings)


def _in_a_vendor_container(parent, code: str) -> None:
    """``parent``'s children of concept ``code`` moved into a vendor container in their place."""
    from simulator import rdsr

    moved = [c for c in parent.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == code]
    at = parent.ContentSequence.index(moved[0])
    for c in moved:
        parent.ContentSequence.remove(c)
    parent.ContentSequence.insert(at, rdsr.container(("V-1", "99VENDOR", "Vendor data"), moved))


def test_an_administration_inside_a_vendor_container_is_read_with_a_warning():
    """The Siemens RRDSR with its Radiopharmaceutical Administration inside a vendor container at the root: the
    report had no administration and no administered activity, and said nothing; now it is read, with the
    warning the X-ray reports give for their events ("Nesting")."""
    ds = pydicom.dcmread(CORPUS / "NM-RRDSR-Siemens.dcm")
    _in_a_vendor_container(ds, "113502")
    rep = extract_dataset(ds)
    assert rep.totals.administered_activity_MBq == 394.0
    assert [a.event_uid for a in rep.administrations] == ["1.3.12.2.1107.5.1.4.11090.20220224104830.0"]
    assert "1 'Radiopharmaceutical Administration' found inside another container, not where the template puts " \
        "them" in rep.warnings


def test_organ_doses_one_level_below_the_administration_are_read():
    """The Siemens RRDSR with its Organ Dose Information containers inside a vendor container in the
    administration: its 22 organ doses were dropped without a warning (its effective dose is looked for at any
    depth; "Nesting")."""
    ds = pydicom.dcmread(CORPUS / "NM-RRDSR-Siemens.dcm")
    administration = next(c for c in ds.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "113502")
    _in_a_vendor_container(administration, "113517")
    (admin,) = extract_dataset(ds).administrations
    assert len(admin.organ_doses) == 22
    assert next(o for o in admin.organ_doses if o.organ == "Bladder").dose_mGy == 51.22
