"""One study as the checks see it: modality, exam category, patient, and exact dose values.

Built from the dose records (the ``Report.to_dict()`` contract, as stored) of the study's
reports that are not superseded by a later cumulative report, so every irradiation event is
counted once.  The live checks (:mod:`agent.checks.stage`) and the local statistics
(:mod:`agent.checks.stats`) read the same view, so they cannot disagree on an exam or a value.

Exam matching: a CT series (an event) is matched on its protocol name and target region; the
study on its description, procedure and procedure code.  A series no rule names takes the
study's exam; a study no rule names takes its series' exam when they all agree, and is
``unmatched`` otherwise.  Unmatched exams are kept and shown (``alara-edge stats``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

from agent.checks.rules import Rules
from agent.checks.tables import phantom_of
from agent.checks.units import exact, total_of
from agent.store.reports import EVENT_SUMS, event_category

UNMATCHED_LABEL = "unmatched"
MATCHES_KEPT = 4096  # exam matches remembered per rule set (see match)

# quantity → the event field / total field of the dose record holding it (canonical units)
EVENT_FIELDS = {"CTDIvol": "ctdivol_mGy", "DLP": "dlp_mGycm", "KAP": "dap_Gym2", "Ka_r": "dose_rp_Gy", "AGD": "agd_mGy"}
TOTAL_FIELDS = {"DLP": "ct_dlp_total_mGycm", "KAP": "dap_total_Gym2", "Ka_r": "dose_rp_total_Gy",
                "fluoro_time": "fluoro_time_total_s"}

# values kept for the rolling medians and the statistics, per modality (quantity, scope)
STANDARD_SAMPLES = {
    "CT": (("CTDIvol", "per_event"), ("DLP", "per_examination")),
    "DX": (("KAP", "per_event"), ("KAP", "per_examination")),
    "RF": (("KAP", "per_examination"), ("Ka_r", "per_examination"), ("fluoro_time", "per_examination")),
    "XA": (("KAP", "per_examination"), ("Ka_r", "per_examination"), ("fluoro_time", "per_examination")),
    "MG": (("AGD", "per_event"),),
}


_MONITORING = re.compile(r"monitor|bolus|smart.?prep|sure.?start|care.?bolus|tracker|tracking", re.IGNORECASE)


@dataclass(frozen=True)
class Exam:
    name: Optional[str]
    region: Optional[str] = None

    @property
    def label(self) -> str:
        return self.name or UNMATCHED_LABEL


UNMATCHED = Exam(None)


@dataclass
class EventView:
    subject: str  # the irradiation event UID, or "<SOP instance UID>#<n>" when the event has none
    uid: Optional[str]
    data: dict[str, Any]
    exam: Exam

    def value(self, quantity: str) -> Optional[Decimal]:
        key = EVENT_FIELDS.get(quantity)
        return exact(self.data.get(key)) if key else None

    @property
    def localizer(self) -> bool:
        """A CT localizer (scout, topogram) or a bolus-tracking / monitoring series: not a sequence in the DRL
        sense (it does not name the study's exam, nor enter a sequence's statistics; its dose counts in the totals)."""
        return "constant angle" in (self.data.get("event_type") or "").lower() or \
            bool(_MONITORING.search(self.data.get("protocol") or ""))

    @property
    def name(self) -> str:
        return self.data.get("protocol") or self.data.get("target_region") or "unnamed series"


@dataclass
class Sample:
    """One value for a rolling median or the statistics, in canonical units."""

    quantity: str
    scope: str
    subject: str  # event subject (per_event) or the study's subject (per_examination)
    exam: Exam
    value: Decimal
    phantom: Optional[str] = None  # "head" (16 cm) or "body" (32 cm) for CT dose indices; None: not stated


@dataclass
class StudyView:
    station: str
    study_uid: Optional[str]
    modality: str
    exam: Exam
    age: Optional[float]
    weight: Optional[float]
    events: list[EventView] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def subject(self) -> str:
        """What identifies the examination: its Study Instance UID (else the latest report's SOP Instance UID)."""
        return self.study_uid or self.records[-1]["sop_instance_uid"]

    def value(self, quantity: str) -> Optional[Decimal]:
        """The examination's total of ``quantity``, exact, as :func:`agent.store.reports.combine_totals`
        counts it: stated totals of reports with disjoint events are added; where reports share
        events, the distinct events' values are added instead (fluoroscopy time from the fluoroscopy
        events' durations), and where no event states one, the largest stated total is taken."""
        event_key, total_key = EVENT_FIELDS.get(quantity), TOTAL_FIELDS.get(quantity)
        overlap = _overlap(self.records)
        if overlap:
            field_, which = next(((f, w) for f, w, t in EVENT_SUMS if t == total_key), (event_key, "all"))
            if field_:
                summed = total_of(exact(e.data.get(field_)) for e in self.events
                                  if which in ("all", event_category(e.data)))
                if summed is not None:
                    return summed
        total: Optional[Decimal] = None
        for rec in self.records:
            v = exact(rec.get("totals", {}).get(total_key)) if total_key else None
            if v is None and event_key:
                v = total_of(exact(e.get(event_key)) for e in rec.get("events", []))
            if v is None:
                continue
            # overlapping reports whose events carry no such value: the largest total (never a double count)
            total = v if total is None else (max(total, v) if overlap else total + v)
        return total

    def samples(self, rules: Rules) -> list[Sample]:
        """The values kept for medians and statistics: the modality's standard ones, plus those
        the loaded DRL rows ask for."""
        wanted = set(STANDARD_SAMPLES.get(self.modality, ()))
        wanted |= {(r.quantity, r.scope) for r in rules.drl_rows() if r.applies_to_modality(self.modality)}
        out = []
        for quantity, scope in sorted(wanted):
            if scope == "per_examination":
                v = self.value(quantity)
                if v is not None:
                    phantoms = {phantom_of(e.data.get("phantom")) for e in self.events if not e.localizer}
                    out.append(Sample(quantity, scope, self.subject, self.exam, v,
                                      phantoms.pop() if len(phantoms) == 1 else None))
                continue
            for e in self.events:
                v = e.value(quantity)
                if v is not None and not e.localizer:
                    out.append(Sample(quantity, scope, e.subject, e.exam, v, phantom_of(e.data.get("phantom"))))
        return out


def view(records: list[dict[str, Any]], rules: Rules, station: str) -> StudyView:
    """The study made of ``records`` (oldest first), matched to exams with ``rules``."""
    latest = records[-1]
    modality = modality_of(latest)
    study = latest.get("study", {})
    study_fields = {
        "study_description": study.get("description"),
        "procedure": " / ".join(p for p in (study.get("procedure_reported"), study.get("requested_procedure")) if p),
        "procedure_code": study.get("procedure_code"),
    }
    study_exam = match(rules, station, modality, study_fields)
    events: list[EventView] = []
    seen: set[str] = set()
    for rec in records:
        for n, e in enumerate(rec.get("events", [])):
            uid = e.get("irradiation_event_uid")
            subject = uid or f"{rec['sop_instance_uid']}#{n}"
            if subject in seen:
                continue
            seen.add(subject)
            own = match(rules, station, modality, {"protocol": e.get("protocol"), "target_region": e.get("target_region")},
                        e.get("event_type"))
            events.append(EventView(subject, uid, e, own or study_exam or UNMATCHED))
    if study_exam is None:
        named = {e.exam for e in events if e.exam.name and not e.localizer}
        study_exam = named.pop() if len(named) == 1 else UNMATCHED
        for e in events:
            if e.exam is UNMATCHED:
                e.exam = study_exam
    patient = latest.get("patient", {})
    return StudyView(station=station, study_uid=latest.get("study_instance_uid"), modality=modality, exam=study_exam,
                     age=patient.get("age_years"), weight=patient.get("weight_kg"), events=events, records=records)


def match(rules: Rules, station: str, modality: str, fields: dict[str, Optional[str]],
          event_type: Optional[str] = None) -> Optional[Exam]:
    """The first exam rule that holds here and names one of ``fields``; None if none does (remembered
    in ``rules``, which a reload replaces: each rule's patterns run over each text, and a department's
    few protocol names recur in every report)."""
    key = (station, modality, event_type, *fields.items())
    if key in rules.matched:
        return rules.matched[key]
    found = next((Exam(rule.exam, rule.region) for rule in rules.exams
                  if rule.restricts(station, modality, event_type) and rule.names(fields)), None)
    if len(rules.matched) >= MATCHES_KEPT:  # free-text names (a study description with a date) must not grow it
        rules.matched.clear()
    rules.matched[key] = found
    return found


def modality_of(record: dict[str, Any]) -> str:
    """CT, DX, RF, XA, MG, PX or NM, from the record (an RDSR's Modality is "SR", so its content decides)."""
    kind = record.get("kind")
    if kind == "ct":
        return "CT"
    if kind == "radiopharmaceutical":
        return "NM"
    stated = (record.get("modality") or "").upper()
    if stated in ("MG", "DX", "RF", "XA", "PX"):
        return stated
    if stated == "CR":
        return "DX"
    events = record.get("events", [])
    totals = record.get("totals", {})
    if totals.get("agd_total_mGy") or any(e.get("agd_mGy") is not None for e in events):
        return "MG"
    if (totals.get("fluoro_time_total_s") or totals.get("fluoro_dap_total_Gym2")
            or any("fluoro" in (e.get("event_type") or "").lower() for e in events)):
        return "RF"
    return "DX"


def _overlap(records: list[dict[str, Any]]) -> bool:
    seen: set[str] = set()
    for rec in records:
        uids = {e["irradiation_event_uid"] for e in rec.get("events", []) if e.get("irradiation_event_uid")}
        if uids & seen:
            return True
        seen |= uids
    return False

