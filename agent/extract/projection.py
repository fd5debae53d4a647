"""Projection X-Ray Radiation Dose (TID 10001): radiography, fluoroscopy, mammography.

Totals come from Accumulated X-Ray Dose Data (TID 10002 with 10004 fluoro/acquisition,
10005 mammography, 10006 cassette, 10007 integrated radiography) exactly as stated; with
two acquisition planes the stated per-plane totals are added (and the record says so).
Events are the Irradiation Event X-Ray Data containers (TID 10003, 10003A/B/C) in content
order.  Per-pulse values become their mean (KVP, tube current, pulse width) or sum (exposure).
"""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Optional

from pydicom.dataset import Dataset

from agent.extract import codes as C
from agent.extract import units as U
from agent.extract.common import (Notes, apply_sr_context, below, code_meaning, count, dt_iso, laterality, num,
                                  num_decimal, ordered_thickness, start_report)
from agent.extract.record import Event, Filter, Report, Totals
from agent.extract.sr import ContentItem, Index

# CID 10002 Irradiation Event Type
EVENT_TYPES = {
    ("SCT", "44491008"): "Fluoroscopy",
    ("DCM", "113611"): "Stationary Acquisition",
    ("DCM", "113612"): "Stepping Acquisition",
    ("DCM", "113613"): "Rotational Acquisition",
}

# Referenced image SOP classes → modality (what the images themselves would say)
_IMAGE_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX", "1.2.840.10008.5.1.4.1.1.1.1.1": "DX",
    "1.2.840.10008.5.1.4.1.1.1.2": "MG", "1.2.840.10008.5.1.4.1.1.1.2.1": "MG",
    "1.2.840.10008.5.1.4.1.1.13.1.3": "MG", "1.2.840.10008.5.1.4.1.1.13.1.4": "MG",
    "1.2.840.10008.5.1.4.1.1.13.1.5": "MG",
    "1.2.840.10008.5.1.4.1.1.1.3": "IO", "1.2.840.10008.5.1.4.1.1.1.3.1": "IO",
    "1.2.840.10008.5.1.4.1.1.12.1": "XA", "1.2.840.10008.5.1.4.1.1.12.1.1": "XA",
    "1.2.840.10008.5.1.4.1.1.13.1.1": "XA",
    "1.2.840.10008.5.1.4.1.1.12.2": "RF", "1.2.840.10008.5.1.4.1.1.12.2.1": "RF",
}

# accumulated concept → (Totals field, quantity); counts are handled separately
_TOTALS = [
    (C.DAP_TOTAL, "dap_total_Gym2", U.DAP),
    (C.DOSE_RP_TOTAL, "dose_rp_total_Gy", U.DOSE_RP),
    (C.FLUORO_DAP_TOTAL, "fluoro_dap_total_Gym2", U.DAP),
    (C.FLUORO_DOSE_RP_TOTAL, "fluoro_dose_rp_total_Gy", U.DOSE_RP),
    (C.FLUORO_TIME_TOTAL, "fluoro_time_total_s", U.TIME_S),
    (C.ACQUISITION_DAP_TOTAL, "acquisition_dap_total_Gym2", U.DAP),
    (C.ACQUISITION_DOSE_RP_TOTAL, "acquisition_dose_rp_total_Gy", U.DOSE_RP),
    (C.ACQUISITION_TIME_TOTAL, "acquisition_time_total_s", U.TIME_S),
]


def extract(ds: Dataset, root: ContentItem, template: str, source: str, notes: Notes) -> Report:
    report = start_report(ds, "projection", None, source, template, notes)
    apply_sr_context(report, root, notes)
    _totals(report.totals, below(root, C.ACCUMULATED_XRAY, notes), notes)
    for item in below(root, C.IRRADIATION_EVENT, notes):
        report.events.append(event(item, notes))
    report.modality = modality(root, report, notes)
    return report


def _totals(totals: Totals, planes: list[ContentItem], notes: Notes) -> None:
    if len(planes) > 1:
        notes.add(f"{len(planes)} acquisition planes: each total is the sum of the planes' stated totals")
    indexes = [Index(p) for p in planes]
    for concept, attr, q in _TOTALS:
        values = [v for v in (num_decimal(i.first(concept), q, notes) for i in indexes) if v is not None]
        if values:
            setattr(totals, attr, float(sum(values, Decimal(0))))
        if 0 < len(values) < len(indexes):
            notes.add(f"{attr} is stated for {len(values)} of the {len(indexes)} planes: the total may be partial")
    frames = [v for v in (count(i.first(C.FRAMES_TOTAL), notes) for i in indexes) if v is not None]
    if frames:
        totals.radiographic_frames_total = sum(frames)
    agd: dict[str, Decimal] = {}
    for plane, index in zip(planes, indexes):
        for item in index.all(C.ACCUMULATED_AGD):
            side = laterality(item.child(C.LATERALITY)) or _beside(plane, item, index)
            value = num_decimal(item, U.AGD, notes)
            if value is None:
                continue
            if side is None:
                notes.add("Accumulated Average Glandular Dose without laterality; not in agd_total_mGy")
                continue
            agd[side] = agd.get(side, Decimal(0)) + value
    if agd:
        totals.agd_total_mGy = {side: float(v) for side, v in agd.items()}


def _beside(container: ContentItem, agd: ContentItem, index: Index) -> Optional[str]:
    """The laterality of an Accumulated AGD that a report put next to the value instead of under
    it (TID 10005 row 2 modifies the value): only when the container holds that one AGD and one
    Laterality, so that it cannot be ambiguous."""
    sides = container.all(C.LATERALITY)
    if len(sides) != 1 or index.all(C.ACCUMULATED_AGD) != [agd] or agd not in container.children:
        return None
    return laterality(sides[0])


def event(item: ContentItem, notes: Notes) -> Event:
    """One Irradiation Event X-Ray Data container (TID 10003) as an event."""
    idx = Index(item)
    ev = Event()
    uid = item.child(C.IRRADIATION_EVENT_UID) or idx.first(C.IRRADIATION_EVENT_UID)
    ev.irradiation_event_uid = uid.string if uid else None
    started = idx.first(C.DATETIME_STARTED)
    ev.datetime_started = dt_iso(started.datetime if started else None, notes, "DateTime Started")
    ev.event_type = code_meaning(idx.first(C.EVENT_TYPE), EVENT_TYPES)
    protocol = idx.first(C.ACQUISITION_PROTOCOL)
    ev.protocol = protocol.string if protocol else None
    region = idx.first(C.TARGET_REGION)
    anatomy = idx.first(C.ANATOMICAL_STRUCTURE)
    ev.target_region = code_meaning(region) or code_meaning(anatomy)
    ev.laterality = laterality(idx.first(C.LATERALITY) or idx.first(C.IMAGE_LATERALITY))
    ev.acquisition_plane = code_meaning(idx.first(C.ACQUISITION_PLANE))
    ev.image_view = code_meaning(idx.first(C.IMAGE_VIEW))
    reference = idx.first(C.REFERENCE_POINT)
    ev.reference_point = (code_meaning(reference) or reference.string) if reference else None

    ev.dap_Gym2 = num(idx.first(C.DAP), U.DAP, notes)
    ev.dose_rp_Gy = num(idx.first(C.DOSE_RP), U.DOSE_RP, notes)
    ev.agd_mGy = num(idx.first(C.AGD), U.AGD, notes)
    ev.entrance_exposure_at_rp_mGy = num(idx.first(C.ENTRANCE_EXPOSURE_RP), U.ENTRANCE, notes)
    ev.half_value_layer_mm = num(idx.first(C.HALF_VALUE_LAYER), U.LENGTH, notes)
    ev.compression_thickness_mm = num(idx.first(C.COMPRESSION_THICKNESS), U.LENGTH, notes)

    ev.kvp = _per_pulse(idx, C.KVP, U.KVP, notes)
    ev.tube_current_mA = _per_pulse(idx, C.TUBE_CURRENT, U.CURRENT, notes)
    ev.pulse_width_ms = _per_pulse(idx, C.PULSE_WIDTH, U.PULSE_WIDTH, notes)
    ev.exposure_uAs = _per_pulse(idx, C.EXPOSURE, U.CHARGE, notes, multi="sum")
    ev.average_tube_current_mA = num(idx.first(C.AVERAGE_TUBE_CURRENT), U.CURRENT, notes)
    ev.exposure_time_s = num(idx.first(C.EXPOSURE_TIME) or idx.first(C.EXPOSURE_TIME_OLD), U.TIME_MS_STD, notes)
    ev.pulses = _pulses(idx, notes)
    ev.pulse_rate_per_s = num(idx.first(C.PULSE_RATE), U.RATE, notes)
    ev.irradiation_duration_s = num(idx.first(C.IRRADIATION_DURATION), U.TIME_S, notes)
    ev.focal_spot_mm = num(idx.first(C.FOCAL_SPOT), U.LENGTH, notes)
    ev.fluoro_mode = code_meaning(idx.first(C.FLUORO_MODE))
    ev.anode_target_material = code_meaning(idx.first(C.ANODE_TARGET))
    ev.filters = _filters(idx.all(C.XRAY_FILTERS), notes)

    ev.positioner_primary_angle_deg = num(idx.first(C.POSITIONER_PRIMARY), U.ANGLE, notes)
    ev.positioner_secondary_angle_deg = num(idx.first(C.POSITIONER_SECONDARY), U.ANGLE, notes)
    ev.source_to_detector_mm = num(idx.first(C.DISTANCE_SOURCE_DETECTOR), U.LENGTH, notes)
    ev.distance_source_to_isocenter_mm = num(idx.first(C.DISTANCE_SOURCE_ISOCENTER), U.LENGTH, notes)
    ev.distance_source_to_rp_mm = num(idx.first(C.DISTANCE_SOURCE_RP), U.LENGTH, notes)
    ev.collimated_field_area_m2 = num(idx.first(C.COLLIMATED_FIELD_AREA), U.AREA, notes)
    ev.exposure_index = num(idx.first(C.EXPOSURE_INDEX), U.NUMBER, notes)
    ev.target_exposure_index = num(idx.first(C.TARGET_EXPOSURE_INDEX), U.NUMBER, notes)
    ev.deviation_index = num(idx.first(C.DEVIATION_INDEX), U.NUMBER, notes)
    return ev


def _per_pulse(idx: Index, concept: C.Concept, q: U.Quantity, notes: Notes, multi: str = "mean") -> Optional[float]:
    """A quantity TID 10003B allows once per pulse (one item with several values, or several
    items): settings (kVp, mA, pulse width) are averaged, the exposure (mAs) is summed."""
    items = idx.all(concept)
    if not items:
        return None
    return num(items[0], q, notes, also=items[1:], multi=multi)


def _pulses(idx: Index, notes: Notes) -> Optional[float]:
    """Number of Pulses; where a Philips Allura Xper states it only as its private "Number of Frames"
    (99PHI-IXR-XPER 003, one frame per pulse, as OpenREM reads it), that, with a warning."""
    stated, frames = idx.first(C.NUMBER_OF_PULSES), idx.first(C.PHILIPS_NUMBER_OF_FRAMES)
    if stated is None and frames is not None:
        notes.add("Number of Pulses from the Philips private Number of Frames (99PHI-IXR-XPER)")
        stated = frames
    return num(stated, U.NUMBER, notes)


def _filters(containers: list[ContentItem], notes: Notes) -> list[Filter]:
    """The distinct filters of an event (tomosynthesis reports repeat them once per projection)."""
    out: list[Filter] = []
    for container in containers:
        thickness = ordered_thickness(num(container.child(C.FILTER_MIN), U.LENGTH, notes),
                                      num(container.child(C.FILTER_MAX), U.LENGTH, notes), notes)
        f = Filter(code_meaning(container.child(C.FILTER_MATERIAL)), *thickness)
        if (f.material, f.min_mm, f.max_mm) != (None, None, None) and f not in out:
            out.append(f)
    return out


def modality(root: ContentItem, report: Report, notes: Notes) -> str:
    """MG, RF, XA, DX or CR, from what the report says about itself.

    In order: mammography (procedure reported, or any glandular dose) → MG; the modality of
    the images the events reference (majority); a biplane system (an acquisition plane B)
    → XA; fluoroscopy events or fluoro totals → RF; the Acquisition Device Type (a
    fluoroscopy-guided system → RF); fluoroscopy totals stated as zero (a fluoroscopy
    system's accumulated data, TID 10004, on a report of acquisitions only) → RF; otherwise
    DX.  An integrated/cassette device type with fluoroscopy events (seen on an interventional
    system) loses to the events.
    """
    procedure = root.child(C.PROCEDURE_REPORTED)
    if (procedure is not None and procedure.code is not None and procedure.code.is_(C.MAMMOGRAPHY)) \
            or report.totals.agd_total_mGy or any(e.agd_mGy is not None for e in report.events):
        return "MG"
    refs = Counter(_IMAGE_MODALITY[r] for item in root.descendants() for r in item.refs if r in _IMAGE_MODALITY)
    fluoro = any(e.event_type == "Fluoroscopy" for e in report.events) or \
        report.totals.fluoro_time_total_s or report.totals.fluoro_dap_total_Gym2
    if refs:
        by_images = refs.most_common(1)[0][0]
        if not fluoro or by_images in ("XA", "RF"):
            return by_images
    if any(item.code is not None and item.code.is_(C.PLANE_B)
           for item in root.descendants() if item.is_(C.ACQUISITION_PLANE)):
        return "XA"
    device = root.child(C.ACQUISITION_DEVICE_TYPE)
    device_code = device.code if device is not None else None
    if fluoro:
        if device_code is not None and not device_code.is_(C.FLUORO_GUIDED_SYSTEM):
            notes.add(f"Acquisition Device Type '{device_code.meaning}' but the report has fluoroscopy; "
                      "modality RF from the events")
        return "RF"
    if device_code is not None and device_code.is_(C.FLUORO_GUIDED_SYSTEM):
        return "RF"
    if device_code is None and (report.totals.fluoro_time_total_s is not None
                                or report.totals.fluoro_dap_total_Gym2 is not None):
        notes.add("no fluoroscopy events, but fluoroscopy totals stated (TID 10004, a fluoroscopy system's "
                  "accumulated data): modality RF")
        return "RF"
    return "DX"


def siemens_summary(ds: Dataset, root: ContentItem, source: str, notes: Notes) -> Report:
    """Siemens "Radiation Summary Report" (99SMS_RADSUM C-10, mobile C-arms): totals only."""
    report = start_report(ds, "projection", "RF", source, "99SMS_RADSUM C-10", notes)
    notes.add("Siemens Radiation Summary Report (private template): study totals only, no irradiation events")
    t = report.totals
    t.radiographic_frames_total = count(root.child(C.SIEMENS_EXPOSURES), notes)
    t.fluoro_time_total_s = num(root.child(C.SIEMENS_FLUORO_TIME), U.TIME_S, notes)
    t.dap_total_Gym2 = num(root.child(C.SIEMENS_DAP), U.DAP, notes)
    t.dose_rp_total_Gy = num(root.child(C.SIEMENS_AIR_KERMA), U.DOSE_RP, notes)
    if report.study.datetime is None:
        start = root.child(C.SIEMENS_START)
        report.study.datetime = dt_iso(start.datetime if start else None, notes)
    return report
