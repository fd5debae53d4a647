"""CT checks: notification values per series, the accumulated alert value per examination and
body region, and the scanner's own dose check as recorded in the RDSR.

- ``ct_notification_value``: a series' CTDIvol (or DLP) at or above the notification value of
  its region/exam and patient group (AAPM 2011 values by default).  Each new series once.
- ``ct_alert_value``: the CTDIvol (or DLP) accumulated over every series of the examination
  in one body region at or above the alert value (NEMA XR-25 concept; 1000 mGy by default).
  Series of no known region are accumulated together, so none escapes.  Once per study and region.
- ``modality_dose_check``: the scanner's dose-check notification or alert (TID 10015) — its
  configured value, the forward estimate that reached it, and the reason the operator gave.

Each function returns candidate alerts; the stage records them (duplicates are dropped by id).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

from agent.checks.alerts import Alert, alert_id, utcnow
from agent.checks.rules import Rules
from agent.checks.study import EventView, StudyView
from agent.checks.tables import phantom_of
from agent.checks.units import QUANTITIES, exact, short, total_of

SCANNER_SOURCE = "the scanner's own dose check (NEMA XR-25), as recorded in the RDSR (TID 10015 CT Dose Check Details)"

# (quantity, configured-value field, field of the forward estimate compared with it, field saying
# whether the check is switched on; the notification falls back to the series' own value when the
# scanner states no per-series estimate)
_SCANNER_CHECKS = {
    "alert": ("critical", "alert_reason", (
        ("CTDIvol", "ctdivol_alert_value_mGy", "accumulated_ctdivol_forward_estimate_mGy", "ctdivol_alert_configured"),
        ("DLP", "dlp_alert_value_mGycm", "accumulated_dlp_forward_estimate_mGycm", "dlp_alert_configured"))),
    "notification": ("warning", "notification_reason", (
        ("CTDIvol", "ctdivol_notification_value_mGy", "ctdivol_forward_estimate_mGy",
         "ctdivol_notification_configured"),
        ("DLP", "dlp_notification_value_mGycm", "dlp_forward_estimate_mGycm", "dlp_notification_configured"))),
}


def notification_values(study: StudyView, new: set[str], rules: Rules) -> list[Alert]:
    out = []
    for e in study.events:
        if e.subject not in new:
            continue
        for quantity in ("CTDIvol", "DLP"):
            observed = e.value(quantity)
            if observed is None:
                continue
            for row in rules.select(["notification_value"], modality=study.modality, quantity=quantity,
                                    exam=e.exam.name, region=e.exam.region or _region_by_phantom(e), age=study.age,
                                    weight=study.weight, phantom=e.data.get("phantom")):
                if observed >= row.threshold:
                    out.append(Alert.for_row(
                        "ct_notification_value", row, station=study.station, subject=(e.subject,), observed=observed,
                        message=f"{quantity} {{value}} of series '{e.name}' is at or above the notification value "
                                f"{{threshold}} ({e.exam.label}, {row.group_label()}): check the protocol before the next scan.",
                        study_instance_uid=study.study_uid, irradiation_event_uid=e.uid, exam=e.exam.label))
    return out


def _region_by_phantom(e: EventView) -> str:
    """A series no exam rule names still meets a notification value: the head's for a 16-cm (head) CTDI
    phantom, else the torso's (the lower one, as for an unknown region)."""
    return "head" if phantom_of(e.data.get("phantom")) == "head" else "torso"


def alert_values(study: StudyView, rules: Rules) -> list[Alert]:
    if study.modality != "CT":
        return []
    regions: dict[Optional[str], list[EventView]] = {}
    for e in study.events:
        regions.setdefault(e.exam.region, []).append(e)
    out = []
    for region, events in regions.items():
        for quantity in ("CTDIvol", "DLP"):
            total = total_of(e.value(quantity) for e in events)
            if total is None:
                continue
            where = region or "unknown region"
            for row in rules.select(["alert_value"], modality="CT", quantity=quantity, exam=study.exam.name,
                                    region=region, age=study.age, weight=study.weight):
                if total >= row.threshold:
                    out.append(Alert.for_row(
                        "ct_alert_value", row, station=study.station, subject=(study.subject, where), observed=total,
                        message=f"Accumulated {quantity} of this examination ({where}, {len(events)} series) is {{value}}, "
                                f"at or above the alert value {{threshold}}: stop and consult before scanning this region again.",
                        study_instance_uid=study.study_uid, exam=study.exam.label, level=where))
    return out


def scanner_dose_checks(study: StudyView, new: set[str]) -> list[Alert]:
    out = []
    for e in study.events:
        check = e.data.get("dose_check")
        if e.subject not in new or not check:
            continue
        for level, (severity, reason_key, pairs) in _SCANNER_CHECKS.items():
            reason = (check.get(reason_key) or "").strip() or None
            reached = []
            for quantity, configured_key, reaching_key, switched_on_key in pairs:
                if check.get(switched_on_key) is False:
                    continue  # the scanner says this check is not switched on: a value it states is not in force
                configured = exact(check.get(configured_key))
                observed = exact(check.get(reaching_key))
                estimated = observed is not None
                if observed is None and level == "notification":
                    observed = e.value(quantity)
                if configured is not None and observed is not None and observed >= configured:
                    reached.append((quantity, observed, configured, estimated))
            if reason and not reached:
                reached.append((None, None, None, False))  # the operator was asked: surface it even without values
            for quantity, observed, configured, estimated in reached:
                out.append(_scanner_alert(study, e, level, severity, reason, quantity, observed, configured, estimated))
    return out


def _scanner_alert(study: StudyView, e: EventView, level: str, severity: str, reason: Optional[str],
                   quantity: Optional[str], observed: Optional[Decimal], configured: Optional[Decimal],
                   estimated: bool = True) -> Alert:
    unit = QUANTITIES[quantity].canonical if quantity else None
    estimate = ("accumulated forward estimate" if level == "alert" else "forward estimate") if estimated \
        else "of the series (no forward estimate stated)"
    what = (f": {quantity} {estimate} {short(observed)} {unit} reached the configured {level} value {short(configured)} {unit}"
            if quantity else "")
    said = f"reason given on the scanner: '{reason}'" if reason else "no reason recorded on the scanner"
    rule = f"scanner-dose-check-{level}"
    return Alert(
        id=alert_id(rule, e.subject, quantity or "-"), kind="modality_dose_check", severity=severity,
        station=study.station, rule=rule, source=SCANNER_SOURCE, raised_at=utcnow(),
        message=f"The scanner's dose-check {level} was triggered for series '{e.name}'{what}; {said}.",
        quantity=quantity, value=observed, threshold=configured, unit=unit, scope="per_event", level=level,
        study_instance_uid=study.study_uid, irradiation_event_uid=e.uid, exam=e.exam.label)

