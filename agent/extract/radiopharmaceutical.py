"""Radiopharmaceutical Radiation Dose (TID 10021): administrations (TID 10022), organ doses.

An RRDSR has no X-ray irradiation events; each administration is listed in
``report.administrations`` and ``totals.administered_activity_MBq`` is the administered
activity the report states (with several administrations, their sum, noted).
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Optional

from pydicom.dataset import Dataset

from agent.extract import codes as C
from agent.extract import units as U
from agent.extract.common import (Notes, apply_sr_context, below, code_meaning, dt_iso, laterality, num,
                                  num_decimal, start_report)
from agent.extract.record import Administration, OrganDose, Report
from agent.extract.sr import ContentItem, Index

# positron emitters (mass number, element): a report about one of these is a PET (PT) procedure
_POSITRON_EMITTERS = {("18", "F"), ("11", "C"), ("13", "N"), ("15", "O"), ("68", "GA"), ("82", "RB"),
                      ("62", "CU"), ("64", "CU"), ("89", "ZR"), ("124", "I"), ("44", "SC")}
_ELEMENTS = {"FLUORINE": "F", "CARBON": "C", "NITROGEN": "N", "OXYGEN": "O", "GALLIUM": "GA", "RUBIDIUM": "RB",
             "COPPER": "CU", "ZIRCONIUM": "ZR", "IODINE": "I", "SCANDIUM": "SC"}


def extract(ds: Dataset, root: ContentItem, template: str, source: str, notes: Notes) -> Report:
    report = start_report(ds, "radiopharmaceutical", None, source, template, notes)
    administrations = below(root, C.RADIOPHARMACEUTICAL_ADMINISTRATION, notes)
    if report.study.datetime is None:  # Study Date is type 2: without it, when the first administration began
        report.study.datetime = _first_start(administrations, notes)
    apply_sr_context(report, root, notes)
    associated = root.child(C.ASSOCIATED_PROCEDURE)
    report.study.procedure_reported = code_meaning(associated) or report.study.procedure_reported
    activities: list[Decimal] = []
    for item in administrations:
        admin, activity = administration(item, notes)
        report.administrations.append(admin)
        if activity is not None:
            activities.append(activity)
    if len(activities) > 1:
        notes.add(f"{len(activities)} administrations: administered_activity_MBq is their sum")
    if 0 < len(activities) < len(report.administrations):
        notes.add(f"administered activity is stated for {len(activities)} of the {len(report.administrations)} "
                  "administrations: administered_activity_MBq may be partial")
    if activities:
        report.totals.administered_activity_MBq = float(sum(activities, Decimal(0)))
    report.modality = _modality(report)
    return report


def administration(item: ContentItem, notes: Notes) -> tuple[Administration, Optional[Decimal]]:
    agent = item.child(C.RADIOPHARMACEUTICAL_AGENT)
    nuclide = (agent.child(C.RADIONUCLIDE) if agent else None) or item.child(C.RADIONUCLIDE)
    half_life = (agent.child(C.HALF_LIFE) if agent else None) or item.child(C.HALF_LIFE)
    uid = item.child(C.ADMINISTRATION_EVENT_UID)
    start, stop = item.child(C.RADIOPHARMACEUTICAL_START), item.child(C.RADIOPHARMACEUTICAL_STOP)
    activity = num_decimal(item.child(C.ADMINISTERED_ACTIVITY), U.ACTIVITY, notes)
    admin = Administration(
        event_uid=uid.string if uid else None,
        radiopharmaceutical=code_meaning(agent),
        radionuclide=code_meaning(nuclide),
        half_life_s=num(half_life, U.TIME_S, notes),
        datetime_started=dt_iso(start.datetime if start else None, notes, "Radiopharmaceutical Start DateTime"),
        datetime_stopped=dt_iso(stop.datetime if stop else None, notes, "Radiopharmaceutical Stop DateTime"),
        activity_MBq=None if activity is None else float(activity),
        pre_administration_activity_MBq=num(item.child(C.PRE_ADMINISTRATION_ACTIVITY), U.ACTIVITY, notes),
        post_administration_activity_MBq=num(item.child(C.POST_ADMINISTRATION_ACTIVITY), U.ACTIVITY, notes),
        route=code_meaning(item.child(C.ROUTE)),
    )
    for info in Index(item).all(C.ORGAN_DOSE_INFORMATION):  # the administration's rows, else the shallowest below
        admin.organ_doses.append(OrganDose(
            organ=code_meaning(info.child(C.FINDING_SITE)),
            laterality=laterality(info.child(C.LATERALITY)),
            dose_mGy=num(info.child(C.ORGAN_DOSE), U.ORGAN_DOSE, notes),
        ))
    effective = next((d for d in item.descendants() if d.is_(C.EFFECTIVE_DOSE)), None)
    admin.effective_dose_mSv = num(effective, U.EFFECTIVE_DOSE, notes)
    return admin, activity


def _first_start(administrations: list[ContentItem], notes: Notes) -> Optional[str]:
    """The Radiopharmaceutical Start DateTime of the first administration that states one."""
    for item in administrations:
        start = item.child(C.RADIOPHARMACEUTICAL_START)
        if start is not None and start.datetime:
            return dt_iso(start.datetime, notes, "Radiopharmaceutical Start DateTime")
    return None


def _modality(report: Report) -> str:
    """PT for a PET procedure or a positron-emitting radionuclide, else NM."""
    texts = [report.study.procedure_reported, report.study.description, report.study.requested_procedure]
    if any(t and re.search(r"\b(PET|POSITRON)", t.upper()) for t in texts):
        return "PT"
    for admin in report.administrations:
        if any(_is_positron_emitter(t) for t in (admin.radionuclide, admin.radiopharmaceutical) if t):
            return "PT"
    return "NM"


def _is_positron_emitter(text: str) -> bool:
    """"^18^Fluorine", "Fluorodeoxyglucose F^18^", "Ga-68 PSMA", "18F" → True."""
    t = re.sub(r"[\^\-]", " ", text.upper())
    pairs = re.findall(r"\b(\d{1,3})\s*([A-Z]{1,10})\b", t) + \
        [(m, e) for e, m in re.findall(r"\b([A-Z]{1,10})\s*(\d{1,3})\b", t)]
    return any((mass, _ELEMENTS.get(element, element)) in _POSITRON_EMITTERS for mass, element in pairs)
