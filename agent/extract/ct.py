"""CT Radiation Dose (TID 10011): accumulated data (10012), acquisitions (10013, 10014), dose check (10015)."""
from __future__ import annotations

import re
from typing import Optional

from pydicom.dataset import Dataset

from agent.extract import codes as C
from agent.extract import units as U
from agent.extract.common import (Notes, apply_sr_context, below, code_meaning, count, dt_iso, flag, laterality, num,
                                  start_report)
from agent.extract.record import DoseCheck, Event, Report, XraySource
from agent.extract.sr import ContentItem, Index

# CID 10013 CT Acquisition Type: the standard's meaning, whatever the vendor wrote
ACQUISITION_TYPES = {
    ("DCM", "113804"): "Sequenced Acquisition",
    ("SCT", "116152004"): "Spiral Acquisition",
    ("SRT", "P5-08001"): "Spiral Acquisition",
    ("DCM", "113805"): "Constant Angle Acquisition",
    ("DCM", "113806"): "Stationary Acquisition",
    ("DCM", "113807"): "Free Acquisition",
    ("SCT", "702569007"): "Cone Beam Acquisition",
    ("SRT", "R-FB8F1"): "Cone Beam Acquisition",
}
# CID 4052: the CTDI phantom by its code, whatever words the scanner's code meaning uses (a scanner set up in
# German writes "Kopf", not "Head"): the checks tell the 16-cm from the 32-cm phantom by these meanings
PHANTOMS = {
    ("DCM", "113690"): "IEC Head Dosimetry Phantom",
    ("DCM", "113691"): "IEC Body Dosimetry Phantom",
}


def extract(ds: Dataset, root: ContentItem, template: str, source: str, notes: Notes) -> Report:
    report = start_report(ds, "ct", "CT", source, template, notes)
    apply_sr_context(report, root, notes)
    accumulated = next(iter(below(root, C.CT_ACCUMULATED, notes)), None)
    if accumulated is not None:
        report.totals.ct_event_count = count(accumulated.child(C.TOTAL_EVENTS), notes)
        report.totals.ct_dlp_total_mGycm = num(accumulated.child(C.CT_DLP_TOTAL), U.DLP, notes)
    for item in below(root, C.CT_ACQUISITION, notes):
        report.events.append(acquisition(item, notes))
    stated = report.totals.ct_event_count
    if stated is not None and stated != len(report.events):
        notes.add(f"the report states {stated} irradiation events and holds {len(report.events)} CT Acquisitions")
    return report


def acquisition(item: ContentItem, notes: Notes) -> Event:
    """One CT Acquisition container (TID 10013) as an event."""
    ev = Event()
    uid = item.child(C.IRRADIATION_EVENT_UID)
    ev.irradiation_event_uid = uid.string if uid else None
    started = item.child(C.DATETIME_STARTED)
    ev.datetime_started = dt_iso(started.datetime if started else None, notes, "DateTime Started")
    ev.event_type = code_meaning(item.child(C.CT_ACQUISITION_TYPE), ACQUISITION_TYPES)
    protocol = item.child(C.ACQUISITION_PROTOCOL)
    ev.protocol = protocol.string if protocol else None
    region = item.child(C.TARGET_REGION)
    ev.target_region = code_meaning(region)
    ev.laterality = laterality(region.child(C.LATERALITY)) if region else None
    ev.procedure_context = code_meaning(item.child(C.PROCEDURE_CONTEXT))
    modulation = item.child(C.XRAY_MODULATION_TYPE)
    ev.xray_modulation_type = (modulation.string or code_meaning(modulation)) if modulation else None  # TEXT or CODE
    if ev.xray_modulation_type is None:
        ev.xray_modulation_type = _modulation_in_comment(item, notes)

    # each value where the template puts it, else at the shallowest level below (docs/extraction.md, "Nesting");
    # without a parameters or a dose container, below the acquisition itself
    params = Index(item.child(C.CT_ACQUISITION_PARAMETERS) or item)
    ev.exposure_time_s = num(params.first(C.EXPOSURE_TIME), U.TIME_S, notes)
    ev.scanning_length_mm = num(params.first(C.SCANNING_LENGTH), U.LENGTH, notes)
    ev.nominal_single_collimation_mm = num(params.first(C.SINGLE_COLLIMATION), U.LENGTH, notes)
    ev.nominal_total_collimation_mm = num(params.first(C.TOTAL_COLLIMATION), U.LENGTH, notes)
    ev.pitch_factor = num(params.first(C.PITCH), U.NUMBER, notes)
    ev.number_of_xray_sources = count(params.first(C.NUMBER_OF_SOURCES), notes)
    ev.sources = [_source(s, notes) for s in params.all(C.CT_SOURCE_PARAMETERS)]
    _event_source_values(ev)

    dose_item = item.child(C.CT_DOSE)
    dose = Index(dose_item or item)
    ev.ctdivol_mGy = num(dose.first(C.MEAN_CTDIVOL), U.CTDIVOL, notes)
    ev.phantom = code_meaning(dose.first(C.PHANTOM), PHANTOMS)
    ev.dlp_mGycm = num(dose.first(C.DLP), U.DLP, notes)
    ev.ssde_mGy = num(dose.first(C.SSDE), U.SSDE, notes)
    ev.effective_dose_mSv = num(dose.first(C.EFFECTIVE_DOSE), U.EFFECTIVE_DOSE, notes)
    ev.dose_check = _dose_check(dose_item, item, notes)
    return ev


_COMMENT_MODULATION = re.compile(r"X-ray Modulation Type\s*=\s*([^,]+)", re.IGNORECASE)


def _modulation_in_comment(item: ContentItem, notes: Notes) -> Optional[str]:
    """X-Ray Modulation Type stated only in the acquisition's Comment (Siemens, older software):
    "Internal technical scan parameters: ..., X-ray Modulation Type = XYZ_EC, ..." gives ``XYZ_EC``."""
    comment = item.child(C.COMMENT)
    match = _COMMENT_MODULATION.search(comment.string or "") if comment is not None else None
    if match is None or not match.group(1).strip():
        return None
    notes.add("X-Ray Modulation Type read from the acquisition's Comment")
    return match.group(1).strip()


def _source(item: ContentItem, notes: Notes) -> XraySource:
    ident = item.child(C.SOURCE_ID)
    return XraySource(
        id=ident.string if ident else None,
        kvp=num(item.child(C.KVP), U.KVP, notes),
        tube_current_mA=num(item.child(C.TUBE_CURRENT), U.CURRENT, notes),
        max_tube_current_mA=num(item.child(C.MAX_TUBE_CURRENT), U.CURRENT, notes),
        exposure_time_per_rotation_s=num(item.child(C.EXPOSURE_TIME_PER_ROTATION), U.TIME_S, notes),
    )


def _event_source_values(ev: Event) -> None:
    """Event-level kVp / mA / rotation time: the sources' value when every source states the same one.

    For dual-source CT with different settings per tube the event-level values stay empty and
    ``sources`` carries one set per tube.
    """
    for attr in ("kvp", "tube_current_mA", "max_tube_current_mA", "exposure_time_per_rotation_s"):
        values = {getattr(s, attr) for s in ev.sources}
        if len(values) == 1:
            setattr(ev, attr, values.pop())


def _dose_check(dose: Optional[ContentItem], acquisition_item: ContentItem, notes: Notes) -> Optional[DoseCheck]:
    """TID 10015 CT Dose Check Details (inside CT Dose, or directly in the acquisition; else, as every event value,
    at the shallowest level below: docs/extraction.md, "Nesting")."""
    holders = [Index(h) for h in (dose, acquisition_item) if h is not None]
    alert = next((h.first(C.ALERT_DETAILS) for h in holders if h.first(C.ALERT_DETAILS)), None)
    notification = next((h.first(C.NOTIFICATION_DETAILS) for h in holders if h.first(C.NOTIFICATION_DETAILS)), None)
    if alert is None and notification is None:
        return None
    dc = DoseCheck()
    both = [c for c in (alert, notification) if c is not None]

    def first(concept: C.Concept) -> Optional[ContentItem]:
        return next((c.child(concept) for c in both if c.child(concept) is not None), None)

    if alert is not None:
        dc.dlp_alert_configured = flag(alert.child(C.DLP_ALERT_CONFIGURED))
        dc.ctdivol_alert_configured = flag(alert.child(C.CTDIVOL_ALERT_CONFIGURED))
        dc.dlp_alert_value_mGycm = num(alert.child(C.DLP_ALERT_VALUE), U.DLP, notes)
        dc.ctdivol_alert_value_mGy = num(alert.child(C.CTDIVOL_ALERT_VALUE), U.CTDIVOL, notes)
        dc.alert_reason = _text(alert.child(C.REASON_FOR_PROCEEDING))
    if notification is not None:
        dc.dlp_notification_configured = flag(notification.child(C.DLP_NOTIFICATION_CONFIGURED))
        dc.ctdivol_notification_configured = flag(notification.child(C.CTDIVOL_NOTIFICATION_CONFIGURED))
        dc.dlp_notification_value_mGycm = num(notification.child(C.DLP_NOTIFICATION_VALUE), U.DLP, notes)
        dc.ctdivol_notification_value_mGy = num(notification.child(C.CTDIVOL_NOTIFICATION_VALUE), U.CTDIVOL, notes)
        dc.notification_reason = _text(notification.child(C.REASON_FOR_PROCEEDING))
    person = first(C.PERSON_NAME)  # the alert's, else the notification's
    dc.person_authorizing = person.string if person else None
    dc.accumulated_dlp_forward_estimate_mGycm = num(first(C.ACCUMULATED_DLP_FORWARD), U.DLP, notes)
    dc.accumulated_ctdivol_forward_estimate_mGy = num(first(C.ACCUMULATED_CTDIVOL_FORWARD), U.CTDIVOL, notes)
    dc.dlp_forward_estimate_mGycm = num(first(C.DLP_FORWARD), U.DLP, notes)
    dc.ctdivol_forward_estimate_mGy = num(first(C.CTDIVOL_FORWARD), U.CTDIVOL, notes)
    return dc


def _text(item: Optional[ContentItem]) -> Optional[str]:
    return item.string if item is not None else None
