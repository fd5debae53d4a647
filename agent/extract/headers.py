"""Dose values carried in image headers and secondary captures (no SR).

* Projection images (CR, DX, MG, IO, PX, RF, XA): one exposure per image — DAP
  (Image and Fluoroscopy Area Dose Product, stored in dGy·cm²), entrance dose (mGy),
  organ dose (the average glandular dose for breast, stored in dGy), HVL, exposure index
  and the technique factors.  ``source`` is ``image-header`` (``secondary-capture`` for an
  SC object such as Hologic's tomosynthesis projections).
* Philips CT "Dose Info" secondary captures: one event per item of the Exposure Dose
  Sequence (CTDIvol, and DLP in the ELSCINT1 private block), the total DLP likewise.

Header attributes in their standard units are converted without a note (dGy·cm² is the
standard unit of the DAP attribute); a 0 where 0 means "not measured" (DAP, the integer
Entrance Dose) is treated as absent.  Images without any dose value are rejected.
"""
from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Optional

from pydicom.dataset import Dataset
from pydicom.uid import UID

from agent.extract.common import (Notes, da_tm_iso, dt_iso, hdecimal, hdecimals, hstr, laterality,
                                  ordered_thickness, sop_class_of, start_report)
from agent.extract.record import Event, Filter, Rejected, Report
from agent.extract.sr import value_text

PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "RF", "XA", "RG", "DF"})
_D = Decimal
_UID_NAMESPACE = uuid.UUID("5c3b7e0a-6f1c-4b7e-9a55-2f0d7c1e9a11")  # alara-edge derived event UIDs

_CT_ACQUISITION_TYPES = {
    "SPIRAL": "Spiral Acquisition", "CONSTANT_ANGLE": "Constant Angle Acquisition",
    "SEQUENCED": "Sequenced Acquisition", "STATIONARY": "Stationary Acquisition", "FREE": "Free Acquisition",
}
# Philips (ELSCINT1) Phantom Type, (01E1,xx26): the CTDI phantom's diameter, as CID 4052 names it
_CT_PHANTOMS = {"16 CM": "IEC Head Dosimetry Phantom", "32 CM": "IEC Body Dosimetry Phantom"}


def _scaled(ds: Dataset, keyword: str, factor: Decimal, notes: Notes) -> Optional[float]:
    value = hdecimal(ds, keyword, notes)
    return None if value is None else float(value * factor)


def _first(*values: Optional[float]) -> Optional[float]:
    return next((v for v in values if v is not None), None)


# -- projection images ------------------------------------------------------------------------
def image(ds: Dataset, source: str, notes: Notes) -> Report:
    """A projection image (or SC) whose header states dose values, as a one-event report."""
    modality = (hstr(ds, "Modality") or "").upper()
    if modality not in PROJECTION_MODALITIES:
        kind = UID(sop_class_of(ds) or "").name or "object"
        raise Rejected(f"{kind} (modality {modality or 'not stated'}): not a dose object; "
                       "its header carries no X-ray dose report (the modality's dose SR does)")
    ev = _projection_event(ds, modality, notes)
    if ev.dap_Gym2 is None and ev.entrance_exposure_at_rp_mGy is None and ev.agd_mGy is None:
        raise Rejected(f"{modality} image header carries no radiation dose information "
                       "(no DAP, entrance dose or organ dose)")
    report = start_report(ds, "projection", modality, source, None, notes)
    report.events.append(ev)
    report.totals.dap_total_Gym2 = ev.dap_Gym2
    if ev.agd_mGy is not None and ev.laterality in ("left", "right", "both"):
        report.totals.agd_total_mGy = {ev.laterality: ev.agd_mGy}
    return report


def _projection_event(ds: Dataset, modality: str, notes: Notes) -> Event:
    ev = Event()
    ev.datetime_started = dt_iso(hstr(ds, "AcquisitionDateTime"), notes, "AcquisitionDateTime") or \
        da_tm_iso(hstr(ds, "AcquisitionDate"), hstr(ds, "AcquisitionTime"), notes, "Acquisition date/time")
    ev.protocol = hstr(ds, "ProtocolName", notes)
    region = ds.get("AnatomicRegionSequence")
    ev.target_region = (hstr(region[0], "CodeMeaning") if region else None) or hstr(ds, "BodyPartExamined", notes)
    ev.laterality = laterality(letter=hstr(ds, "ImageLaterality") or hstr(ds, "Laterality"))
    ev.image_view = hstr(ds, "ViewPosition")
    ev.kvp = _scaled(ds, "KVP", _D(1), notes)
    ev.tube_current_mA = _first(_scaled(ds, "XRayTubeCurrentInmA", _D(1), notes),
                                _scaled(ds, "XRayTubeCurrentInuA", _D("0.001"), notes),
                                _scaled(ds, "XRayTubeCurrent", _D(1), notes))
    ev.exposure_time_s = _first(_scaled(ds, "ExposureTimeInms", _D("0.001"), notes),
                                _scaled(ds, "ExposureTimeInuS", _D("0.000001"), notes),
                                _scaled(ds, "ExposureTime", _D("0.001"), notes))
    ev.exposure_uAs = _first(_scaled(ds, "ExposureInuAs", _D(1), notes),
                             _scaled(ds, "ExposureInmAs", _D(1000), notes),
                             _scaled(ds, "Exposure", _D(1000), notes))
    ev.focal_spot_mm = _scaled(ds, "FocalSpots", _D(1), notes)
    ev.anode_target_material = hstr(ds, "AnodeTargetMaterial")
    ev.filters = _filters(ds, notes)
    ev.source_to_detector_mm = _source_to_detector(ds, notes)
    ev.positioner_primary_angle_deg = _scaled(ds, "PositionerPrimaryAngle", _D(1), notes)
    ev.positioner_secondary_angle_deg = _scaled(ds, "PositionerSecondaryAngle", _D(1), notes)
    ev.exposure_index = _scaled(ds, "ExposureIndex", _D(1), notes)
    ev.target_exposure_index = _scaled(ds, "TargetExposureIndex", _D(1), notes)
    ev.deviation_index = _scaled(ds, "DeviationIndex", _D(1), notes)
    ev.half_value_layer_mm = _scaled(ds, "HalfValueLayer", _D(1), notes)

    dap = hdecimal(ds, "ImageAndFluoroscopyAreaDoseProduct", notes)  # dGy.cm2
    if dap is not None and dap > 0:
        ev.dap_Gym2 = float(dap * _D("0.00001"))
    elif dap is not None:
        notes.add("ImageAndFluoroscopyAreaDoseProduct is 0 (not measured); no DAP")
    entrance = hdecimal(ds, "EntranceDoseInmGy", notes)
    coarse = hdecimal(ds, "EntranceDose", notes)  # dGy, integer
    if entrance is not None and entrance > 0:
        ev.entrance_exposure_at_rp_mGy = float(entrance)
    elif coarse is not None and coarse > 0:
        ev.entrance_exposure_at_rp_mGy = float(coarse * 100)
        notes.add("entrance dose from the integer EntranceDose attribute (dGy resolution)")
    organ = hdecimal(ds, "OrganDose", notes)  # dGy
    exposed = (hstr(ds, "OrganExposed") or "").upper()
    if organ is not None and organ > 0 and (exposed == "BREAST" or (modality == "MG" and not exposed)):
        ev.agd_mGy = float(organ * 100)
    if modality == "MG":
        ev.compression_thickness_mm = _scaled(ds, "BodyPartThickness", _D(1), notes)
    ev.irradiation_event_uid = hstr(ds, "IrradiationEventUID") or _derived_event_uid(ds, ev, notes)
    return ev


def _filters(ds: Dataset, notes: Notes) -> list[Filter]:
    """Filter Material with its thicknesses; vendors separate several filters by '\\' or ','.  Without a
    Filter Material, a Filter Type that names material and thickness (Siemens: ``CU_0.2_MM``) is the filter."""
    materials = [m.strip() for m in re.split(r"[\\,]", hstr(ds, "FilterMaterial") or "") if m.strip()]
    if not materials:
        return _filter_from_type(hstr(ds, "FilterType"), notes)
    lows, highs = hdecimals(ds, "FilterThicknessMinimum"), hdecimals(ds, "FilterThicknessMaximum")
    out = []
    for i, material in enumerate(materials):
        low = float(lows[i]) if i < len(lows) else None
        high = float(highs[i]) if i < len(highs) else None
        out.append(Filter(material, *ordered_thickness(low, high, notes)))
    return out


# chemical symbols in Filter Type values such as CU_0.2_MM, as the header spells the material elsewhere
_FILTER_SYMBOLS = {"CU": "COPPER", "AL": "ALUMINUM", "MO": "MOLYBDENUM", "RH": "RHODIUM", "AG": "SILVER",
                   "NB": "NIOBIUM", "TA": "TANTALUM", "PB": "LEAD", "SN": "TIN", "W": "TUNGSTEN"}
_FILTER_TYPE = re.compile(r"^([A-Z]{1,2})_?(\d+(?:\.\d+)?)_?MM$")


def _filter_from_type(filter_type: Optional[str], notes: Notes) -> list[Filter]:
    """The filter a Filter Type (0018,1160) names with material and thickness (``CU_0.2_MM``: 0.2 mm of copper),
    as Siemens radiography writes it instead of Filter Material and Filter Thickness."""
    m = _FILTER_TYPE.match((filter_type or "").strip().upper())
    if not m or m.group(1) not in _FILTER_SYMBOLS:
        return []
    notes.add(f"filter read from Filter Type '{filter_type}' (no Filter Material in the header)")
    thickness = float(Decimal(m.group(2)))
    return [Filter(_FILTER_SYMBOLS[m.group(1)], thickness, thickness)]


# models whose Distance Source to Detector is in decimetres, not mm (OpenREM's extractor says the same)
_SID_IN_DM = (("KODAK", "DR 7500"),)


def _source_to_detector(ds: Dataset, notes: Notes) -> Optional[float]:
    """Distance Source to Detector in mm; a model known to write it in dm (Kodak DR 7500: '11.5' for a
    115 cm SID) is converted, with a warning."""
    value = hdecimal(ds, "DistanceSourceToDetector", notes)
    if value is None:
        return None
    maker, model = (hstr(ds, "Manufacturer") or "").upper(), (hstr(ds, "ManufacturerModelName") or "").upper()
    if any(m in maker and mod in model for m, mod in _SID_IN_DM):
        notes.add(f"DistanceSourceToDetector {value} is in dm on {maker.title()} {model}; converted to mm")
        return float(value * 100)
    return float(value)


def _derived_event_uid(ds: Dataset, ev: Event, notes: Notes) -> Optional[str]:
    """A stable UID for an exposure whose header has no Irradiation Event UID.

    Derived from the study, the device, the acquisition time and the technique, so the
    "for processing" and "for presentation" images of one exposure get the same UID and
    the store counts the exposure once.  Without an acquisition time there is nothing
    stable to derive it from: no UID.
    """
    if ev.datetime_started is None and not hstr(ds, "AcquisitionTime"):
        return None
    parts = [hstr(ds, k) for k in ("StudyInstanceUID", "Manufacturer", "ManufacturerModelName",
                                   "DeviceSerialNumber", "StationName", "AcquisitionDate", "AcquisitionTime",
                                   "AcquisitionDateTime", "ViewPosition")]
    parts += [repr(v) for v in (ev.laterality, ev.kvp, ev.exposure_uAs, ev.dap_Gym2, ev.entrance_exposure_at_rp_mGy)]
    notes.add("no Irradiation Event UID in the header: derived one from study, device, acquisition time and technique")
    return "2.25." + str(uuid.uuid5(_UID_NAMESPACE, "|".join(p or "" for p in parts)).int)


# -- secondary captures ----------------------------------------------------------------------
def secondary_capture(ds: Dataset, notes: Notes) -> Report:
    if ds.get("ExposureDoseSequence") and (hstr(ds, "Modality") or "").upper() == "CT":
        return _ct_dose_info(ds, notes)
    if (hstr(ds, "Modality") or "").upper() in PROJECTION_MODALITIES:
        return image(ds, "secondary-capture", notes)
    raise Rejected("secondary capture without structured dose attributes (any dose is only in the pixels)")


def _private(ds: Dataset, group: int, creator: str, element: int) -> Optional[str]:
    try:
        text = value_text(ds.private_block(group, creator)[element].value).strip(" \x00")
    except (KeyError, ValueError):
        return None
    return text or None


def _ct_dose_info(ds: Dataset, notes: Notes) -> Report:
    """Philips CT "Dose Info" secondary capture: the Exposure Dose Sequence and the ELSCINT1 DLP."""
    report = start_report(ds, "ct", "CT", "secondary-capture", None, notes)
    notes.add("CT dose from a 'Dose Info' secondary capture header: no irradiation event UIDs or times")
    for item in ds.ExposureDoseSequence:
        ev = Event()
        ev.event_type = _CT_ACQUISITION_TYPES.get((hstr(item, "AcquisitionType") or "").upper()) \
            or hstr(item, "AcquisitionType")
        ev.protocol = hstr(item, "SeriesDescription")
        ev.datetime_started = dt_iso(hstr(item, "AcquisitionDateTime"), notes, "AcquisitionDateTime")
        ev.kvp = _scaled(item, "KVP", _D(1), notes)
        ev.tube_current_mA = _first(_scaled(item, "XRayTubeCurrentInuA", _D("0.001"), notes),
                                    _scaled(item, "XRayTubeCurrent", _D(1), notes))
        ev.exposure_time_s = _scaled(item, "ExposureTime", _D("0.001"), notes)
        ev.scanning_length_mm = _scaled(item, "ScanLength", _D(1), notes)
        ev.nominal_single_collimation_mm = _scaled(item, "SingleCollimationWidth", _D(1), notes)
        ev.nominal_total_collimation_mm = _scaled(item, "TotalCollimationWidth", _D(1), notes)
        ev.pitch_factor = _scaled(item, "SpiralPitchFactor", _D(1), notes)
        ev.ctdivol_mGy = _scaled(item, "CTDIvol", _D(1), notes)
        ev.phantom = _phantom(item)
        dlp = _private(item, 0x00E1, "ELSCINT1", 0x21)
        ev.dlp_mGycm = float(_D(dlp)) if dlp and _is_number(dlp) else None
        report.events.append(ev)
    total = _private(ds, 0x00E1, "ELSCINT1", 0x21)
    if total and _is_number(total):
        report.totals.ct_dlp_total_mGycm = float(_D(total))
    else:
        m = re.search(r"Total DLP\s*=\s*([0-9.]+)", hstr(ds, "CommentsOnRadiationDose", notes) or "")
        if m:
            report.totals.ct_dlp_total_mGycm = float(_D(m.group(1)))
            notes.add("total DLP read from Comments on Radiation Dose (rounded as printed there)")
    exposures = hdecimal(ds, "TotalNumberOfExposures", notes)
    report.totals.ct_event_count = int(exposures) if exposures is not None else None
    return report


def _phantom(item: Dataset) -> Optional[str]:
    """The CTDIvol phantom of a Dose Info entry: Philips states it only in its private Phantom Type
    (ELSCINT1 (01E1,xx26): "16 CM" head, "32 CM" body); another text is kept as stated."""
    stated = _private(item, 0x01E1, "ELSCINT1", 0x26)
    return _CT_PHANTOMS.get(re.sub(r"\s+", " ", stated.upper()), stated) if stated else None


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*", text) is not None
