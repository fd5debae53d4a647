"""Fixtures for the dose checks: a real store, rules from TOML text, synthetic reports.

``Checked.ingest`` runs what :meth:`agent.pipeline.Pipeline.ingest` runs after extraction —
``save_report`` and the checks stage in one store transaction — for a synthetic
:class:`Report` that has no DICOM encoding (tests on encoded files use the Pipeline itself).
"""
from __future__ import annotations

import itertools
import tomllib
from typing import Optional

import pytest

from agent.checks import ChecksStage, list_alerts, load_rules
from agent.checks.rules import Rules
from agent.config import ChecksConfig
from agent.extract.record import DoseCheck, Event, Patient, Report, Study, Totals
from agent.pipeline import Ingest
from agent.store import Store
from agent.store.reports import Receipt, save_report
from tests.conftest import REPO

REPO_CONFIG = REPO / "config"

_uids = itertools.count(1)


def uid(prefix: str = "1.2.826.0.1.3680043.10.999") -> str:
    return f"{prefix}.{next(_uids)}"


def rules_from(text: str = "") -> Rules:
    """Rules from a ``[checks]`` TOML snippet (defaults included unless it says otherwise)."""
    return load_rules(ChecksConfig.model_validate(tomllib.loads(text).get("checks", {})))


def ct_event(protocol: str = "Head", ctdivol: Optional[float] = 50.0, dlp: Optional[float] = 900.0, *,
             target_region: Optional[str] = None, event_type: str = "Spiral Acquisition", phantom: Optional[str] = None,
             uid_: Optional[str] = None, dose_check: Optional[DoseCheck] = None) -> Event:
    return Event(irradiation_event_uid=uid_ or uid(), event_type=event_type, protocol=protocol,
                 target_region=target_region, ctdivol_mGy=ctdivol, dlp_mGycm=dlp, phantom=phantom, dose_check=dose_check)


def ct_report(events: list[Event], *, study_uid: Optional[str] = None, description: Optional[str] = None,
              age: Optional[float] = 50.0, weight: Optional[float] = None, dlp_total: Optional[float] = None) -> Report:
    total = dlp_total if dlp_total is not None else (sum(e.dlp_mGycm or 0 for e in events) if events else None)
    return Report(sop_instance_uid=uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
                  study_instance_uid=study_uid or uid(), series_instance_uid=uid(), kind="ct", modality="SR",
                  source="rdsr", template="10011", study=Study(description=description),
                  patient=Patient(age_years=age, weight_kg=weight),
                  totals=Totals(ct_dlp_total_mGycm=total, ct_event_count=len(events)), events=events)


def rf_report(*, study_uid: Optional[str] = None, dap_Gym2: Optional[float] = None, dose_rp_Gy: Optional[float] = None,
              fluoro_time_s: Optional[float] = None, events: Optional[list[Event]] = None, description: Optional[str] = None,
              age: Optional[float] = 60.0) -> Report:
    events = events if events is not None else [Event(irradiation_event_uid=uid(), event_type="Fluoroscopy")]
    return Report(sop_instance_uid=uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
                  study_instance_uid=study_uid or uid(), series_instance_uid=uid(), kind="projection", modality="SR",
                  source="rdsr", template="10001", study=Study(description=description),
                  patient=Patient(age_years=age),
                  totals=Totals(dap_total_Gym2=dap_Gym2, dose_rp_total_Gy=dose_rp_Gy, fluoro_time_total_s=fluoro_time_s),
                  events=events)


class Checked:
    """A store with the checks stage, fed the way the pipeline feeds it."""

    def __init__(self, store: Store, rules: Rules, station: str = "CT1"):
        self.store = store
        self.stage = ChecksStage(rules)
        self.station = station

    def ingest(self, report: Report) -> list:
        receipt = Receipt(received_at=f"2025-01-01T00:00:00.{next(_uids):09d}Z", origin="import",
                          path="-", sha256="0" * 64, size_bytes=0, sop_instance_uid=report.sop_instance_uid)
        with self.store.transaction() as tx:
            saved = save_report(tx, report, receipt, self.station)
            ingest = Ingest(report=report, receipt=receipt, saved=saved, station=self.station)
            if not saved.duplicate:
                self.stage(tx, ingest)
        return ingest.alerts

    def alerts(self, **kw) -> list:
        return list_alerts(self.store.db, **kw)

    def outbox(self, kind: str) -> list[dict]:
        return list(self.store.db.query("SELECT * FROM outbox WHERE kind = ? ORDER BY seq", [kind]))


@pytest.fixture
def checked(store):
    """Checks with the built-in defaults only."""
    return Checked(store, rules_from())


def kinds(alerts) -> list[str]:
    return sorted(a.kind for a in alerts)
