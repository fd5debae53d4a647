"""Fluoroscopy thresholds on cumulative values of a procedure (``fluoro_threshold``).

For each quantity (Ka,r, KAP, fluoroscopy time, peak skin dose) the rules give a first
notification level F, a subsequent increment I and a substantial radiation dose level (SRDL);
NCRP Report 168 values by default (Ka,r 3 Gy / every 1 Gy / 5 Gy; KAP 300 / 100 / 500 Gy·cm²;
time 30 / 15 / 60 min).  As a procedure's cumulative value V grows:

- the first notification fires once when V ≥ F (warning);
- a subsequent notification fires once for each level F + k·I (k ≥ 1) that V reaches (warning);
  when one update jumps over several levels only the highest is raised — the others can never
  be reached again, since V only grows;
- the SRDL fires once when V ≥ S (critical).

Each level fires once per procedure: the alert id is derived from the rule, the procedure and
the level, so partial values from a live DAP meter and cumulative RDSRs that repeat earlier
events never raise a level twice.  An increment counts from the lowest first-notification level
that applies (from zero if none does).

Entry point for live streams (the serial DAP-meter reader calls it inside the transaction that
stores the reading)::

    alerts = evaluate_procedure(tx, stage.rules, station="ROOM1", procedure_id="proc-42",
                                quantity="KAP", cumulative_value=31.7, unit="Gy·cm²")

``procedure_id`` is whatever identifies one procedure on that stream (the console's "new
patient" starts a new one).  The alerts returned are recorded and queued in the outbox
inside ``tx``; once it has committed, the caller publishes each on the bus
(``bus.publish("alert", alert)``) as the pipeline does for reports.

For RDSRs the stage applies the same logic to the study's accumulated totals, with the
Study Instance UID as the procedure.  On a biplane system the Ka,r of the two planes is not added
(NCRP 168: each plane's reference point is on its own skin field): the plane with the larger Ka,r
is compared, from its irradiation events.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

import sqlite_utils

from agent.checks.alerts import Alert, record
from agent.checks.rules import Rules
from agent.checks.study import StudyView
from agent.checks.units import Number, from_canonical, quantity as find_quantity, short, text, to_canonical
from agent.extract.record import ACQUISITION_PLANES

QUANTITIES = ("Ka_r", "KAP", "fluoro_time", "PSD")
PER_PLANE = ("Ka_r",)  # skin-dose quantities: a biplane system's planes are not added (NCRP 168)
PLANES = tuple(ACQUISITION_PLANES.values())
ACCOUNTED = Decimal("0.02")  # the events' values and the stated totals, rounded each their own way


def evaluate_procedure(tx: sqlite_utils.Database, rules: Rules, station: str, procedure_id: str, quantity: str,
                       cumulative_value: Number, unit: str, *, modality: str = "RF", age: Optional[float] = None,
                       weight: Optional[float] = None, study_instance_uid: Optional[str] = None) -> list[Alert]:
    """Record the threshold alerts that ``cumulative_value`` (in ``unit``) newly reaches; returns them.

    Raises :class:`agent.checks.units.UnitError` for an unknown quantity or unit.
    """
    q = find_quantity(quantity)
    value = to_canonical(q, cumulative_value, unit)
    found = crossings(rules, station=station, procedure_id=procedure_id, quantity=q.name, value=value,
                      modality=modality, age=age, weight=weight, study_instance_uid=study_instance_uid)
    return [a for a in found if record(tx, a)]


def from_study(study: StudyView, rules: Rules) -> list[Alert]:
    """The thresholds a fluoroscopy study's accumulated totals reach (the study is the procedure)."""
    out = []
    for name in QUANTITIES:
        value, plane = study.value(name), None
        if value is not None and name in PER_PLANE:
            value, plane = _largest_plane(study, name, value)
        if value is not None:
            found = crossings(rules, station=study.station, procedure_id=study.subject, quantity=name, value=value,
                              modality=study.modality, age=study.age, weight=study.weight,
                              study_instance_uid=study.study_uid, exam=study.exam.label,
                              place=(study.exam.name, study.exam.region))
            for alert in found if plane else ():
                alert.message += f" The Ka,r is that of {plane}: a biplane system's planes are not added."
            out += found
    return out


def _largest_plane(study: StudyView, quantity: str, total: Decimal) -> tuple[Decimal, Optional[str]]:
    """The value of the plane with the larger ``quantity`` and its name, for a study of two planes whose
    irradiation events state it and account for the study's ``total``; else ``total`` (the planes added: a
    notification too many rather than one missed) and None."""
    planes: dict[str, Decimal] = {}
    for e in study.events:
        plane, v = e.data.get("acquisition_plane"), e.value(quantity)
        if plane not in PLANES or v is None:
            return total, None
        planes[plane] = planes.get(plane, Decimal(0)) + v
    if len(planes) < 2 or sum(planes.values()) < total * (1 - ACCOUNTED):
        return total, None
    plane = max(planes, key=lambda p: planes[p])
    return planes[plane], plane


def crossings(rules: Rules, *, station: str, procedure_id: str, quantity: str, value: Decimal, modality: str,
              age: Optional[float] = None, weight: Optional[float] = None, study_instance_uid: Optional[str] = None,
              exam: Optional[str] = None, place: tuple[Optional[str], Optional[str]] = (None, None)) -> list[Alert]:
    """Every level ``value`` (canonical units) has reached, as alerts (recording drops those already raised).

    ``place``: (exam name, region) the procedure was matched to, for rows that name one; a live
    stream with no exam gets the rows for any exam.  ``exam`` is the label the alert shows."""
    def rows(kind: str):
        return rules.select([kind], modality=modality, quantity=quantity, exam=place[0], region=place[1],
                            age=age, weight=weight)

    where = dict(station=station, procedure_id=procedure_id, study_instance_uid=study_instance_uid, exam=exam)
    out = []
    firsts = rows("notification_first")
    for row in firsts:
        if value >= row.threshold:
            out.append(Alert.for_row(
                "fluoro_threshold", row, subject=(procedure_id,), observed=value, level="first notification",
                message=f"Cumulative {row.q.label} {{value}} has reached the first notification level {{threshold}}: "
                        "tell the operator.", **where))
    base = min((r.threshold for r in firsts), default=Decimal(0))
    for row in rows("notification_subsequent_increment"):
        if value < base + row.threshold:
            continue
        level = base + (value - base) // row.threshold * row.threshold
        shown = f"{short(from_canonical(row.q, level, row.unit))} {row.unit}"
        out.append(Alert.for_row(
            "fluoro_threshold", row, subject=(procedure_id, text(level)), observed=value, limit=level,
            level=f"subsequent notification at {shown}",
            message=f"Cumulative {row.q.label} {{value}} has passed {{threshold}} (a further "
                    f"{short(row.value)} {row.unit} since the last notification level): tell the operator.", **where))
    for row in rows("SRDL"):
        if value >= row.threshold:
            out.append(Alert.for_row(
                "fluoro_threshold", row, subject=(procedure_id,), observed=value, level="SRDL",
                message=f"Cumulative {row.q.label} {{value}} has reached the substantial radiation dose level "
                        "{threshold}: tell the operator, record it, and arrange patient follow-up.", **where))
    return out
