"""DRL checks: one examination above a DRL, and the rolling median above it (ICRP 135).

- ``exam_above_drl`` (info): one examination — or one sequence/view, for a per-event row —
  at or above ``exam_drl_factor`` × the DRL.  An investigation flag for review, not a DRL
  exceedance: a DRL is the 75th percentile of a distribution of medians, so a quarter of
  single examinations at a typical site are above it.
- ``median_above_drl`` (warning): the median of the last N examinations (``median_window``)
  of one station × exam × patient group at or above the DRL — the exceedance in the sense of
  ICRP 135.  Raised once each time the median goes from below to at-or-above (an "episode");
  its id names the study that opened the episode, as the episode numbers start again in a store
  restored from a backup or a replacement box's new one (the central site keeps each id once).

Every stored examination leaves its values in ``check_samples`` (one row per study or event;
a cumulative report updates its study's row), which is the rolling window.  The per-event rows of a
report superseded under other event UIDs (images' headers by their study's RDSR) leave it (the stage).
"""
from __future__ import annotations

import statistics
from decimal import Decimal

import sqlite_utils

from agent.checks.alerts import Alert, utcnow
from agent.checks.rules import Rules
from agent.checks.study import Sample, StudyView
from agent.checks.tables import DRL_KINDS, LevelRow
from agent.checks.units import short, text


def exam_above_drl(study: StudyView, samples: list[Sample], new: set[str], rules: Rules) -> list[Alert]:
    """``samples``: ``study.samples(rules)``; per-event ones are checked only for events in ``new``."""
    out = []
    factor = rules.exam_drl_factor
    for sample in samples:
        if sample.scope == "per_event" and sample.subject not in new:
            continue
        for row in _rows(rules, study, sample):
            limit = row.threshold * factor
            if sample.value < limit:
                continue
            # the limit is factor × DRL: name the DRL itself too, so that the limit is not read as the DRL
            above = "the DRL {threshold}" if factor == 1 else \
                f"{{threshold}} ({text(factor)} × the DRL {short(row.value)} {row.unit})"
            what = "This examination" if sample.scope == "per_examination" else f"Series/view '{_event_name(study, sample)}'"
            out.append(Alert.for_row(
                "exam_above_drl", row, station=study.station, subject=(sample.subject,), observed=sample.value,
                limit=limit,
                message=f"{what} ({sample.exam.label}) has {row.quantity} {{value}}, at or above {above}: "
                        "review it (one examination above a DRL is not a DRL exceedance).",
                study_instance_uid=study.study_uid, exam=sample.exam.label,
                irradiation_event_uid=sample.subject if sample.scope == "per_event" else None))
    return out


def median_above_drl(tx: sqlite_utils.Database, study: StudyView, samples: list[Sample], rules: Rules) -> list[Alert]:
    """Record this study's ``samples`` in the window, then compare each applicable DRL with its rolling median."""
    now = utcnow()
    # when the examination was performed: the window is the *last* N examinations, also when older ones are
    # backfilled later (`alara-edge import`); a report without a study date counts as performed when received
    performed = (study.records[-1].get("study") or {}).get("datetime") if study.records else None
    for s in samples:
        tx.execute(
            "INSERT INTO check_samples (station, quantity, scope, subject, exam, value, age_years, weight_kg, phantom, "
            "recorded_at, performed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (station, quantity, scope, subject) DO UPDATE "
            "SET exam = excluded.exam, value = excluded.value, age_years = excluded.age_years, "
            "weight_kg = excluded.weight_kg, phantom = excluded.phantom, "
            "performed_at = coalesce(excluded.performed_at, check_samples.performed_at)",
            [study.station, s.quantity, s.scope, s.subject, s.exam.label, text(s.value), study.age, study.weight,
             s.phantom, now, performed])
    out = []
    seen: set[str] = set()
    for s in samples:
        for row in _rows(rules, study, s):
            if row.id in seen:
                continue
            seen.add(row.id)
            median = rolling_median(tx, row, study.station, s.exam.label, rules)
            if median is None:
                continue
            episode = _new_episode(tx, row.id, study.station, median >= row.threshold)
            if episode is None:
                continue
            out.append(Alert.for_row(
                "median_above_drl", row, station=study.station, subject=(study.station, episode, study.study_uid),
                observed=median,
                message=f"The median {row.quantity} of the last {rules.median_window} {s.exam.label} "
                        f"{'examinations' if row.scope == 'per_examination' else 'series/views'} "
                        f"({row.group_label()}) on station {study.station} is {{value}}, at or above the DRL {{threshold}}: "
                        "review the protocol and technique with the medical physicist.",
                study_instance_uid=study.study_uid, exam=s.exam.label, level=f"episode {episode}"))
    return out


def rolling_median(db: sqlite_utils.Database, row: LevelRow, station: str, exam: str, rules: Rules) -> Decimal | None:
    """The median of the last ``median_window`` values of ``row``'s exam, quantity, patient group and
    (for a row on one CTDI phantom) phantom at ``station``; None while there are fewer than that.
    "Last" by when the examination was performed (when it was received, if the report states no date), so
    that a backfill of older reports does not push the recent ones out of the window.
    A value whose phantom is not stated counts for either."""
    window: list[Decimal] = []
    cursor = db.execute(
        "SELECT value, age_years, weight_kg, phantom FROM check_samples WHERE station = ? AND exam = ? AND quantity = ? "
        "AND scope = ? ORDER BY coalesce(performed_at, recorded_at) DESC, rowid DESC",
        [station, exam, row.quantity, row.scope])
    for value, age, weight, phantom in cursor:
        if row.applies_to_patient(age, weight, rules.adult_age) and row.applies_to_phantom(phantom):
            window.append(Decimal(value))
            if len(window) == rules.median_window:
                return statistics.median(window)
    return None


def _rows(rules: Rules, study: StudyView, sample: Sample) -> list[LevelRow]:
    rows = rules.select(DRL_KINDS, modality=study.modality, quantity=sample.quantity, exam=sample.exam.name,
                        region=sample.exam.region, age=study.age, weight=study.weight, phantom=sample.phantom)
    return [r for r in rows if r.scope == sample.scope]


def _new_episode(tx: sqlite_utils.Database, rule: str, station: str, above: bool) -> int | None:
    """Track whether the median is above; the new episode number when it has just gone above."""
    found = tx.execute("SELECT above, episode FROM median_state WHERE rule = ? AND station = ?", [rule, station]).fetchone()
    was_above, episode = (bool(found[0]), found[1]) if found else (False, 0)
    if above == was_above:
        return None
    episode += 1 if above else 0
    tx.execute("INSERT INTO median_state (rule, station, above, episode) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (rule, station) DO UPDATE SET above = excluded.above, episode = excluded.episode",
               [rule, station, int(above), episode])
    return episode if above else None


def _event_name(study: StudyView, sample: Sample) -> str:
    return next((e.name for e in study.events if e.subject == sample.subject), sample.subject)
