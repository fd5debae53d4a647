"""The pipeline stage that queues each stored dose report for the central site, privacy applied.

It runs inside the transaction that stores the report (register it after the checks stage), so
the report and its outbox row commit together: one is never on disk without the other.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlite_utils
import structlog

from agent.config import Config
from agent.store import outbox
from agent.store.reports import combine_totals

from .privacy import Privacy, secret_path

if TYPE_CHECKING:
    from agent.pipeline import Ingest

log = structlog.get_logger("agent.uplink")


class ReportOutboxStage:
    """Pipeline stage: queue each stored report for the central site, privacy applied.

    Register it after the checks stage: ``pipeline.stages.append(ReportOutboxStage(config))``.
    """

    def __init__(self, config: Config):
        self.privacy = Privacy(config.privacy, default_secret=secret_path(config))

    def check_site_secret(self, db: sqlite_utils.Database) -> bool:
        """Log ``site_secret_changed`` (error) and return False if the store's last queued pseudonym was
        made with another site secret: a store restored without its ``site-secret`` file, or the file
        replaced, gives every patient a new pseudonym and splits their history at the central site."""
        if self.privacy.secret is None:
            return True
        row = db.execute("SELECT json_extract(body, '$.patient.pseudonym_key') FROM outbox WHERE kind = 'report' "
                         "AND json_extract(body, '$.patient.pseudonym_key') IS NOT NULL "
                         "ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None or row[0] == self.privacy.secret.key_id:
            return True
        log.error("site_secret_changed", previous_key=row[0], key=self.privacy.secret.key_id,
                  hint="this store's reports were pseudonymised with another site secret: restore the site-secret "
                       "file that belongs to it (from the backup or another station of the site), or every patient "
                       "gets a new pseudonym at the central site")
        return False

    def __call__(self, tx: sqlite_utils.Database, ingest: Ingest) -> None:
        body = report_body(tx, ingest, self.privacy)
        outbox.enqueue(tx, "report", outbox.event_id("report", ingest.report.sop_instance_uid), body)


def report_body(tx: sqlite_utils.Database, ingest: Ingest, privacy: Privacy) -> dict[str, Any]:
    """The report as the central site sees it: the extract contract without PHI, the patient's
    pseudonym (or id, or nothing), when it arrived, what it supersedes and the study's totals so far."""
    report = ingest.report
    body = json.loads(ingest.saved.record_json)  # a fresh copy of the record just stored
    patient = dict(body.get("patient", {}))
    patient.update(privacy.identity(report.phi))
    if patient:
        body["patient"] = patient
    if isinstance(body.get("study"), dict):
        privacy.accession(body["study"])
    body["received_at"] = ingest.receipt.received_at
    if ingest.saved.superseded:
        body["supersedes"] = list(ingest.saved.superseded)
    if ingest.saved.superseded_by:
        body["superseded_by"] = ingest.saved.superseded_by
    if report.study_instance_uid:
        body["study_totals"] = combine_totals(ingest.study_records(tx))
    privacy.scrub(body, report.phi)
    return body
