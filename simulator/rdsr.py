"""Synthetic, standard-conformant X-Ray Radiation Dose SRs (PS3.16 TID 10011 CT, TID 10001 projection).

Used by the demo modality, the tests and the benchmarks.  Values are given in the
standard's units (mGy, mGy·cm, Gy·m², Gy, s) and written as the DS strings given, so a
test knows to the last digit what a correct extraction must return.  No real patient:
names and ids are invented.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Optional

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

RDSR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"

# (value, scheme, meaning)
PROCEDURE_CT = ("P5-08000", "SRT", "Computed Tomography X-Ray")
PROCEDURE_PROJECTION = ("113704", "DCM", "Projection X-Ray")
REGIONS = {
    "Head": ("T-D1100", "SRT", "Head"),
    "Chest": ("T-D3000", "SRT", "Chest"),
    "Abdomen": ("T-D4000", "SRT", "Abdomen"),
    "Chest, Abdomen and Pelvis": ("R-FAB56", "SRT", "Chest, Abdomen and Pelvis"),
    "Entire body": ("T-D0010", "SRT", "Entire body"),
}
CT_TYPES = {
    "Spiral Acquisition": ("P5-08001", "SRT", "Spiral Acquisition"),
    "Sequenced Acquisition": ("113804", "DCM", "Sequenced Acquisition"),
    "Constant Angle Acquisition": ("113805", "DCM", "Constant Angle Acquisition"),
}
PHANTOMS = {"head": ("113690", "DCM", "IEC Head Dosimetry Phantom"),
            "body": ("113691", "DCM", "IEC Body Dosimetry Phantom")}
PROJECTION_TYPES = {"Fluoroscopy": ("P5-06000", "SRT", "Fluoroscopy"),
                    "Stationary Acquisition": ("113611", "DCM", "Stationary Acquisition")}


@dataclass
class CTSeries:
    protocol: str
    target_region: str = "Head"
    ctdivol: str = "50.0"  # mGy, as written in the report
    dlp: str = "900.0"  # mGy.cm
    acquisition_type: str = "Spiral Acquisition"
    phantom: str = "head"
    kvp: str = "120"
    mA: str = "200"
    uid: str = field(default_factory=generate_uid)


@dataclass
class ProjectionEvent:
    event_type: str = "Fluoroscopy"
    protocol: str = "Fluoro"
    dap: str = "0.0001"  # Gy.m2
    dose_rp: str = "0.002"  # Gy
    kvp: str = "77"
    exposure_time_ms: str = "1000"
    uid: str = field(default_factory=generate_uid)


@dataclass
class Patient:
    name: str = "Demo^Patient"
    id: str = "DEMO0001"
    birth_date: str = "19700101"
    age: str = "055Y"
    sex: str = "O"
    weight: Optional[str] = "70"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _item(rel: str, vt: str, concept: tuple[str, str, str]) -> Dataset:
    it = Dataset()
    it.RelationshipType = rel
    it.ValueType = vt
    it.ConceptNameCodeSequence = Sequence([_code(*concept)])
    return it


def num(concept: tuple[str, str, str], value: str, unit: tuple[str, str, str], rel: str = "CONTAINS") -> Dataset:
    it = _item(rel, "NUM", concept)
    mv = Dataset()
    mv.NumericValue = value
    mv.MeasurementUnitsCodeSequence = Sequence([_code(*unit)])
    it.MeasuredValueSequence = Sequence([mv])
    return it


def code(concept: tuple[str, str, str], value: tuple[str, str, str], rel: str = "CONTAINS") -> Dataset:
    it = _item(rel, "CODE", concept)
    it.ConceptCodeSequence = Sequence([_code(*value)])
    return it


def text(concept: tuple[str, str, str], value: str, rel: str = "CONTAINS") -> Dataset:
    it = _item(rel, "TEXT", concept)
    it.TextValue = value
    return it


def uidref(concept: tuple[str, str, str], value: str, rel: str = "CONTAINS") -> Dataset:
    it = _item(rel, "UIDREF", concept)
    it.UID = value
    return it


def container(concept: tuple[str, str, str], children: list[Dataset], rel: str = "CONTAINS") -> Dataset:
    it = _item(rel, "CONTAINER", concept)
    it.ContinuityOfContent = "SEPARATE"
    it.ContentSequence = Sequence(children)
    return it


def _dt(value: dt.datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S")


def _base(modality_name: str, patient: Patient, study_uid: str, when: dt.datetime, accession: str,
          description: str, station: str, manufacturer: str, model: str, template: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RDSR_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = RDSR_SOP_CLASS
    ds.Modality = "SR"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 997
    ds.InstanceNumber = 1
    ds.StudyDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = accession
    ds.StudyDescription = description
    ds.StationName = station
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.DeviceSerialNumber = "SIM-0001"
    ds.InstitutionName = "Simulated Hospital"
    ds.SoftwareVersions = "alara-edge simulator"
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = patient.age
    if patient.weight is not None:
        ds.PatientWeight = patient.weight
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ConceptNameCodeSequence = Sequence([_code("113701", "DCM", "X-Ray Radiation Dose Report")])
    tpl = Dataset()
    tpl.MappingResource = "DCMR"
    tpl.TemplateIdentifier = template
    ds.ContentTemplateSequence = Sequence([tpl])
    return ds


def ct_report(series: list[CTSeries], *, study_uid: str | None = None, patient: Patient | None = None,
              when: dt.datetime | None = None, accession: str = "ACC0001", description: str = "CT Head",
              station: str = "SIMCT1", manufacturer: str = "Simulated", model: str = "SimCT 64",
              dlp_total: str | None = None) -> Dataset:
    """A CT RDSR (TID 10011) with one CT Acquisition per series; DLP total = the sum unless given."""
    when = when or dt.datetime(2026, 11, 2, 9, 30, 0)
    patient = patient or Patient()
    study_uid = study_uid or generate_uid()
    ds = _base("CT", patient, study_uid, when, accession, description, station, manufacturer, model, "10011")
    if dlp_total is None:
        from decimal import Decimal

        dlp_total = str(sum(Decimal(s.dlp) for s in series))
    content = [
        code(("121058", "DCM", "Procedure reported"), PROCEDURE_CT, rel="HAS CONCEPT MOD"),
        code(("121005", "DCM", "Observer Type"), ("121007", "DCM", "Device"), rel="HAS OBS CONTEXT"),
        uidref(("121012", "DCM", "Device Observer UID"), "1.2.826.0.1.3680043.10.1.1", rel="HAS OBS CONTEXT"),
        text(("121014", "DCM", "Device Observer Manufacturer"), manufacturer, rel="HAS OBS CONTEXT"),
        text(("121015", "DCM", "Device Observer Model Name"), model, rel="HAS OBS CONTEXT"),
        _datetime(("113809", "DCM", "Start of X-Ray Irradiation"), when),
        container(("113811", "DCM", "CT Accumulated Dose Data"), [
            num(("113812", "DCM", "Total Number of Irradiation Events"), str(len(series)), ("{events}", "UCUM", "events")),
            num(("113813", "DCM", "CT Dose Length Product Total"), dlp_total, ("mGy.cm", "UCUM", "mGy.cm")),
        ]),
    ]
    for s in series:
        content.append(container(("113819", "DCM", "CT Acquisition"), [
            text(("125203", "DCM", "Acquisition Protocol"), s.protocol),
            code(("123014", "DCM", "Target Region"), REGIONS[s.target_region]),
            code(("113820", "DCM", "CT Acquisition Type"), CT_TYPES[s.acquisition_type]),
            uidref(("113769", "DCM", "Irradiation Event UID"), s.uid),
            container(("113822", "DCM", "CT Acquisition Parameters"), [
                num(("113824", "DCM", "Exposure Time"), "5", ("s", "UCUM", "s")),
                num(("113825", "DCM", "Scanning Length"), "250", ("mm", "UCUM", "mm")),
                num(("113826", "DCM", "Nominal Single Collimation Width"), "0.625", ("mm", "UCUM", "mm")),
                num(("113827", "DCM", "Nominal Total Collimation Width"), "40", ("mm", "UCUM", "mm")),
                num(("113828", "DCM", "Pitch Factor"), "0.984", ("{ratio}", "UCUM", "ratio")),
                num(("113823", "DCM", "Number of X-Ray Sources"), "1", ("{X-Ray sources}", "UCUM", "X-Ray sources")),
                container(("113831", "DCM", "CT X-Ray Source Parameters"), [
                    text(("113832", "DCM", "Identification of the X-Ray Source"), "A"),
                    num(("113733", "DCM", "KVP"), s.kvp, ("kV", "UCUM", "kV")),
                    num(("113833", "DCM", "Maximum X-Ray Tube Current"), s.mA, ("mA", "UCUM", "mA")),
                    num(("113734", "DCM", "X-Ray Tube Current"), s.mA, ("mA", "UCUM", "mA")),
                    num(("113834", "DCM", "Exposure Time per Rotation"), "0.5", ("s", "UCUM", "s")),
                ]),
            ]),
            container(("113829", "DCM", "CT Dose"), [
                num(("113830", "DCM", "Mean CTDIvol"), s.ctdivol, ("mGy", "UCUM", "mGy")),
                code(("113835", "DCM", "CTDIw Phantom Type"), PHANTOMS[s.phantom]),
                num(("113838", "DCM", "DLP"), s.dlp, ("mGy.cm", "UCUM", "mGy.cm")),
            ]),
        ]))
    ds.ContentSequence = Sequence(content)
    return ds


def projection_report(events: list[ProjectionEvent], *, study_uid: str | None = None, patient: Patient | None = None,
                      when: dt.datetime | None = None, accession: str = "ACC0002",
                      description: str = "Fluoroscopy", station: str = "SIMRF1", manufacturer: str = "Simulated",
                      model: str = "SimFluoro", totals: dict[str, str] | None = None) -> Dataset:
    """A projection X-ray RDSR (TID 10001) with accumulated totals (summed from the events unless given)."""
    from decimal import Decimal

    when = when or dt.datetime(2026, 11, 2, 10, 0, 0)
    patient = patient or Patient()
    study_uid = study_uid or generate_uid()
    ds = _base("RF", patient, study_uid, when, accession, description, station, manufacturer, model, "10001")
    fluoro = [e for e in events if e.event_type == "Fluoroscopy"]
    acq = [e for e in events if e.event_type != "Fluoroscopy"]

    def total(evts, attr):
        return str(sum((Decimal(getattr(e, attr)) for e in evts), Decimal(0)))

    t = {
        "dap": total(events, "dap"), "rp": total(events, "dose_rp"),
        "fluoro_dap": total(fluoro, "dap"), "fluoro_rp": total(fluoro, "dose_rp"),
        "fluoro_time": str(sum((Decimal(e.exposure_time_ms) for e in fluoro), Decimal(0)) / 1000),
        "acq_dap": total(acq, "dap"), "acq_rp": total(acq, "dose_rp"),
    }
    t.update(totals or {})
    content = [
        code(("121058", "DCM", "Procedure reported"), PROCEDURE_PROJECTION, rel="HAS CONCEPT MOD"),
        code(("121005", "DCM", "Observer Type"), ("121007", "DCM", "Device"), rel="HAS OBS CONTEXT"),
        uidref(("121012", "DCM", "Device Observer UID"), "1.2.826.0.1.3680043.10.1.2", rel="HAS OBS CONTEXT"),
        container(("113702", "DCM", "Accumulated X-Ray Dose Data"), [
            code(("113764", "DCM", "Acquisition Plane"), ("113622", "DCM", "Single Plane"), rel="HAS CONCEPT MOD"),
            num(("113722", "DCM", "Dose Area Product Total"), t["dap"], ("Gy.m2", "UCUM", "Gy.m2")),
            num(("113725", "DCM", "Dose (RP) Total"), t["rp"], ("Gy", "UCUM", "Gy")),
            num(("113726", "DCM", "Fluoro Dose Area Product Total"), t["fluoro_dap"], ("Gy.m2", "UCUM", "Gy.m2")),
            num(("113728", "DCM", "Fluoro Dose (RP) Total"), t["fluoro_rp"], ("Gy", "UCUM", "Gy")),
            num(("113730", "DCM", "Total Fluoro Time"), t["fluoro_time"], ("s", "UCUM", "s")),
            num(("113727", "DCM", "Acquisition Dose Area Product Total"), t["acq_dap"], ("Gy.m2", "UCUM", "Gy.m2")),
            num(("113729", "DCM", "Acquisition Dose (RP) Total"), t["acq_rp"], ("Gy", "UCUM", "Gy")),
            code(("113780", "DCM", "Reference Point Definition"), ("113860", "DCM", "15cm from Isocenter toward Source")),
        ]),
    ]
    for i, e in enumerate(events):
        content.append(container(("113706", "DCM", "Irradiation Event X-Ray Data"), [
            code(("113764", "DCM", "Acquisition Plane"), ("113622", "DCM", "Single Plane")),
            uidref(("113769", "DCM", "Irradiation Event UID"), e.uid),
            _datetime(("111526", "DCM", "DateTime Started"), when + dt.timedelta(minutes=i), rel="CONTAINS"),
            code(("113721", "DCM", "Irradiation Event Type"), PROJECTION_TYPES[e.event_type]),
            text(("125203", "DCM", "Acquisition Protocol"), e.protocol),
            num(("122130", "DCM", "Dose Area Product"), e.dap, ("Gy.m2", "UCUM", "Gy.m2")),
            num(("113738", "DCM", "Dose (RP)"), e.dose_rp, ("Gy", "UCUM", "Gy")),
            num(("113733", "DCM", "KVP"), e.kvp, ("kV", "UCUM", "kV")),
            num(("113735", "DCM", "Exposure Time"), e.exposure_time_ms, ("ms", "UCUM", "ms")),
        ]))
    ds.ContentSequence = Sequence(content)
    return ds


def _datetime(concept: tuple[str, str, str], value: dt.datetime, rel: str = "HAS OBS CONTEXT") -> Dataset:
    it = _item(rel, "DATETIME", concept)
    it.DateTime = _dt(value)
    return it


def encode(ds: Dataset) -> bytes:
    """A complete DICOM Part 10 file, as a modality would send it."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
