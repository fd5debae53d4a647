"""Local statistics: per station × exam × patient group, n, median, 75th percentile and a
proposed local DRL — computed from every stored report, so backfilled ones count and a
change to the exam-matching rules applies to the past as well.

Each examination contributes its values as the checks see them (:meth:`StudyView.samples`):
DLP, KAP, Ka,r and fluoroscopy time per examination; CTDIvol per sequence (localizers left
out); KAP per view for radiography; AGD per view for mammography.  Exams no rule matches are
in the ``unmatched`` bucket, so nothing escapes unseen.  CT values stated on the 16-cm (head) and
the 32-cm (body) CTDI phantom are kept apart (the same exposure reads about twice as high on the
16-cm one, as paediatric body scans are often stated), and a DRL row for one phantom is shown
only beside the values on that phantom.

The proposed local DRL is the 75th percentile of the values, offered once there are at least
``stats_min_n`` of them.  ICRP 135 sets a local DRL from the 75th percentile of the *median*
values of several rooms; for a single room the median is the "typical value".  Both are shown
for the medical physicist to decide; nothing here changes a rule.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

import sqlite_utils

from agent.checks.rules import Rules
from agent.checks.study import view
from agent.checks.tables import DRL_KINDS
from agent.checks.units import QUANTITIES, exact, from_canonical


@dataclass
class Bucket:
    station: str
    exam: str
    patient_group: str
    quantity: str
    scope: str
    phantom: Optional[str]  # CT dose indices: "head" (16 cm), "body" (32 cm) or None (not stated); else None
    values: list[Decimal] = field(default_factory=list)  # canonical units
    patients: list[tuple[Optional[float], Optional[float]]] = field(default_factory=list)


def patient_group(age: Optional[float], rules: Rules) -> str:
    """``adult`` (also when the age is not stated) or ``paediatric A-B y`` by the configured bands."""
    a = exact(age)
    if a is None or a >= rules.adult_age:
        return "adult"
    edges = [Decimal(0), *rules.stats_age_bands, rules.adult_age]
    low, high = next((lo, hi) for lo, hi in zip(edges, edges[1:]) if lo <= a < hi)
    return f"paediatric {low}-{high} y"


def compute(db: sqlite_utils.Database, rules: Rules) -> list[dict[str, Any]]:
    """One row per station × exam × patient group × quantity, sorted; values in display units."""
    buckets: dict[tuple[str, str, str, str, str, str], Bucket] = {}
    for station, records in _studies(db):
        study = view(records, rules, station)
        group = patient_group(study.age, rules)
        for s in study.samples(rules):
            key = (station, s.exam.label, group, s.quantity, s.scope, s.phantom or "")
            bucket = buckets.setdefault(key, Bucket(*key[:5], s.phantom))
            bucket.values.append(s.value)
            bucket.patients.append((study.age, study.weight))
    return [_row(b, rules) for _, b in sorted(buckets.items())]


def _row(b: Bucket, rules: Rules) -> dict[str, Any]:
    q = QUANTITIES[b.quantity]
    values = sorted(b.values)
    median = statistics.median(values)
    p75 = statistics.quantiles(values, n=4, method="inclusive")[2] if len(values) > 1 else values[0]
    drls = [r for r in rules.levels if r.kind in DRL_KINDS and r.quantity == b.quantity and r.scope == b.scope
            and r.exam and r.exam.lower() == b.exam.lower() and (r.phantom is None or r.phantom == b.phantom)
            and any(r.applies_to_patient(age, weight, rules.adult_age) for age, weight in b.patients)]

    def shown(v: Decimal) -> float:
        return float(from_canonical(q, v, q.display))

    return {
        "station": b.station, "exam": b.exam, "patient_group": b.patient_group, "quantity": b.quantity,
        "scope": b.scope, "phantom": b.phantom, "unit": q.display, "n": len(values), "median": shown(median),
        "p75": shown(p75),
        "proposed_local_drl": shown(p75) if len(values) >= rules.stats_min_n else None,
        "drls": [{"rule": r.id, "value": shown(r.threshold), "source": r.source_text} for r in drls],
    }


def _studies(db: sqlite_utils.Database):
    """(station, records oldest first) per study, from the reports that are not superseded."""
    studies: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for station, study_uid, sop_uid, record in db.execute(
            "SELECT station, study_instance_uid, sop_instance_uid, record FROM reports "
            "WHERE superseded_by IS NULL ORDER BY received_at, rowid").fetchall():
        studies.setdefault(study_uid or sop_uid, (station, []))[1].append(json.loads(record))
    return studies.values()
