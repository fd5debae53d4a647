"""The pipeline stage: check every stored report in the transaction that stores it.

``ChecksStage(rules)`` is registered in :class:`agent.pipeline.Pipeline` stages.  For each
stored (non-duplicate) report it builds the study as stored so far (its reports that are not
superseded, so a cumulative RDSR counts each event once), runs every check kind, records the
new alerts, queues them in the outbox and appends them to ``ingest.alerts`` — all before the
transaction commits, so a stored report never misses its checks.  Per-series checks look at
the series new to the store only; per-examination checks are raised once per study (the alert
id is derived from rule and subject), so re-sent and cumulative reports raise nothing twice.
An alert's message names the series by its protocol and may quote the scanner's reason: the
patient's name, id or birth date copied there is removed (:mod:`agent.phi`) before it is stored.

A check that fails on unexpected data is logged (``check_failed``) and its writes are rolled
back; the report is still stored and the other checks still run.  Database errors abort the
transaction as usual.  ``reload`` swaps the rules (SIGHUP); a bad table keeps the previous rules.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import sqlite_utils
import structlog

from agent import phi
from agent.checks import ct, drl, fluoro
from agent.checks.alerts import Alert, record
from agent.checks.rules import Rules, RulesError, load_rules
from agent.checks.study import EVENT_FIELDS, StudyView, view

if TYPE_CHECKING:
    from agent.config import ChecksConfig
    from agent.pipeline import Ingest

log = structlog.get_logger("agent.checks")


class ChecksStage:
    def __init__(self, rules: Rules):
        self.rules = rules

    def __call__(self, tx: sqlite_utils.Database, ingest: "Ingest") -> None:
        rules = self.rules  # one snapshot per report, even if a reload swaps them meanwhile
        if not rules.enabled:
            return
        started = time.perf_counter()
        report = ingest.report
        records = ingest.study_records(tx)
        study = view(records or [report.to_dict()], rules, ingest.station)
        new = set(ingest.saved.new_event_uids)
        if ingest.saved.repeats is None:  # (a report without event UIDs sent again: its series were checked)
            new |= {f"{report.sop_instance_uid}#{n}" for n, e in enumerate(report.events)
                    if not e.irradiation_event_uid}
        samples = study.samples(rules)
        raised: list[tuple[str, str, Decimal]] = []
        if ingest.saved.superseded:  # what the reports it supersedes left behind them
            held = {e.subject for e in study.events}
            _forget_superseded(tx, ingest.saved.superseded, held)
            raised = _raised_on_replaced(tx, study.study_uid, held)
        checks: list[tuple[str, Callable[[], list[Alert]]]] = [
            ("ct_notification_value", lambda: ct.notification_values(study, new, rules)),
            ("ct_alert_value", lambda: ct.alert_values(study, rules)),
            ("modality_dose_check", lambda: ct.scanner_dose_checks(study, new)),
            ("exam_above_drl", lambda: drl.exam_above_drl(study, samples, new, rules)),
            ("median_above_drl", lambda: drl.median_above_drl(tx, study, samples, rules)),
            ("fluoro_threshold", lambda: fluoro.from_study(study, rules)),
        ]
        quoted = _quoted_texts(study, phi.pattern(report.phi))  # a protocol or a scanner's reason may name the patient
        for name, check in checks:
            for alert in _guarded(tx, name, study, check):
                if raised and _raised_before(alert, raised):
                    continue
                for text, redacted in quoted:
                    alert.message = alert.message.replace(text, redacted)
                if record(tx, alert):
                    ingest.alerts.append(alert)
        if study.exam.name is None:
            log.info("exam_unmatched", sop_instance_uid=report.sop_instance_uid, modality=study.modality,
                     hint="add a [[checks.exam]] rule; alara-edge stats lists unmatched exams")
        log.debug("report_checked", sop_instance_uid=report.sop_instance_uid, exam=study.exam.label,
                  modality=study.modality, alerts=len(ingest.alerts), ms=round((time.perf_counter() - started) * 1000, 2))

    def reload(self, checks: "ChecksConfig") -> bool:
        """Load new rules from ``checks``; keep the current ones (and log why) if they cannot be loaded."""
        try:
            rules = load_rules(checks)
        except RulesError as exc:
            log.error("rules_reload_failed", reason=str(exc), kept=len(self.rules.levels))
            return False
        self.rules = rules
        log.info("rules_reloaded", levels=len(rules.levels), exam_rules=len(rules.exams), sources=list(rules.sources))
        return True

    def reload_file(self, config_path: str | Path | None) -> bool:
        """Re-read the configuration file and reload from its ``[checks]`` (the daemon's SIGHUP handler)."""
        from agent import config

        try:
            cfg = config.load(config_path)
        except (config.ConfigError, OSError) as exc:
            log.error("rules_reload_failed", reason=str(exc), kept=len(self.rules.levels))
            return False
        return self.reload(cfg.checks)


def _forget_superseded(tx: sqlite_utils.Database, superseded: list[str], held: set[str]) -> None:
    """Take the per-series/per-view values of the reports ``superseded`` out of the rolling window, where they are
    not events the study still ``held``: an RDSR's exposures were already there under the event UIDs its images'
    headers were given (a dose screen's under ``<SOP>#<n>``), and each counted twice in the medians."""
    for station, sop, record in tx.execute(
            f"SELECT station, sop_instance_uid, record FROM reports WHERE sop_instance_uid IN "
            f"({','.join('?' * len(superseded))})", superseded).fetchall():
        events = json.loads(record).get("events", [])
        gone = [s for s in (e.get("irradiation_event_uid") or f"{sop}#{n}" for n, e in enumerate(events))
                if s not in held]
        if gone:
            tx.execute(f"DELETE FROM check_samples WHERE station = ? AND quantity IN "
                       f"({','.join('?' * len(EVENT_FIELDS))}) AND scope = 'per_event' AND subject IN "
                       f"({','.join('?' * len(gone))})",
                       [station, *EVENT_FIELDS, *gone])  # (through the primary key, not a scan of the station's)


PER_EXPOSURE = ("ct_notification_value", "exam_above_drl", "modality_dose_check")  # alerts on one series or view
SAME_VALUE = Decimal("0.02")  # a dose screen's or an image's value and the RDSR's, rounded each its own way


def _raised_on_replaced(tx: sqlite_utils.Database, study_uid: Optional[str],
                        held: set[str]) -> list[tuple[str, str, Decimal]]:
    """(kind, rule, value) of the per-series and per-view alerts of the study raised on exposures it no longer
    ``held`` (event subjects): those of the dose screen or images a report now supersedes (:func:`_raised_before`)."""
    if not study_uid:
        return []
    return [(kind, rule, Decimal(value)) for kind, rule, value, uid in tx.execute(
        f"SELECT kind, rule, value, irradiation_event_uid FROM alerts WHERE study_instance_uid = ? "
        f"AND kind IN ({','.join('?' * len(PER_EXPOSURE))}) AND value IS NOT NULL",
        [study_uid, *PER_EXPOSURE]).fetchall() if uid is None or uid not in held]


def _raised_before(alert: Alert, raised: list[tuple[str, str, Decimal]]) -> bool:
    """Whether ``alert`` repeats one raised on the same scan as the study's dose screen or an image showed it
    (the RDSR that supersedes them states the scans again, under event UIDs of their own): the same kind and
    rule, and the same value but for rounding.  Each earlier alert answers for one new alert at most; the
    match is taken out of ``raised``.  A scan the screen or the images did not show is still alerted."""
    if alert.kind not in PER_EXPOSURE or alert.value is None:
        return False
    for n, (kind, rule, value) in enumerate(raised):
        if (kind, rule) == (alert.kind, alert.rule) and abs(value - alert.value) <= SAME_VALUE * max(
                abs(value), abs(alert.value)):
            del raised[n]
            log.info("alert_raised_before", kind=alert.kind, rule=alert.rule,
                     study_instance_uid=alert.study_instance_uid, hint="the same scan, as the study's dose screen "
                     "or images showed it: alerted then")
            return True
    return False


def _quoted_texts(study: StudyView, identity: Optional[re.Pattern[str]]) -> list[tuple[str, str]]:
    """The report's own texts that alert messages quote (a series' name — its protocol or target
    region —, the scanner's dose-check reasons) in which the patient's identity is found, each with
    its redacted form, longest first.  Only these are redacted in a message: the message's own words
    and numbers stay whole even when a name part or an id equals one ("Head", "1000")."""
    if identity is None:
        return []
    texts = {e.name for e in study.events}
    for e in study.events:
        check = e.data.get("dose_check") or {}
        texts |= {check.get("alert_reason"), check.get("notification_reason")}
    found = [(t, phi.redact(t, identity)) for t in texts if t and identity.search(t)]
    return sorted(found, key=lambda pair: len(pair[0]), reverse=True)


def _guarded(tx: sqlite_utils.Database, name: str, study: StudyView, check: Callable[[], list[Alert]]) -> list[Alert]:
    """Run one check in a savepoint; a failure other than the database's is logged, not raised."""
    try:
        with tx.atomic():
            return check()
    except sqlite3.Error:
        raise
    except Exception as exc:
        log.error("check_failed", check=name, study_instance_uid=study.study_uid, error=f"{type(exc).__name__}: {exc}",
                  exc_info=True)
        return []
