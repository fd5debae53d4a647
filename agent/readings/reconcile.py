"""Reconciliation: a DAP meter's procedure total against the modality's RDSR for the same procedure.

A pipeline stage (``Pipeline(..., stages=[..., Reconcile.from_config(cfg)])``).  When a projection
RDSR with a DAP total is stored, the stage looks for the DAP-meter procedure of this station whose
dose was delivered within the RDSR's irradiation-event times (± ``reconcile_window_s``), and records
the comparison in ``serial_reconciliations``.  A relative difference above the meter's
``reconcile_tolerance`` (default 25 %) is a QA finding: logged as ``meter_rdsr_mismatch`` and sent to
the central site (outbox kind ``reading``, type ``reconciliation``).  A drifting meter calibration or a
wrong DAP unit on either side is exactly what this shows.

A DAP meter sits on one tube.  The total of a biplane RDSR adds both planes, so it is not compared with
a meter: a meter configured with ``reconcile_plane`` (A or B) is compared with the DAP of that plane's
irradiation events; one without is not compared with a biplane RDSR (``meter_rdsr_not_compared``).

RDSR times are local times as the modality states them; a time without offset is read in the
station's time zone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Optional
from zoneinfo import ZoneInfo

import sqlite_utils
import structlog

from agent.extract.record import ACQUISITION_PLANES
from agent.store import outbox

from .ledger import utc_iso

log = structlog.get_logger("agent.readings")

DEFAULT_TOLERANCE = 0.25


@dataclass
class Reconcile:
    tolerances: dict[str, float]  # per DAP-meter device; others use DEFAULT_TOLERANCE
    window_s: float = 900.0
    tz: Optional[tzinfo] = None
    planes: dict[str, str] = field(default_factory=dict)  # per DAP-meter device on a biplane system: A or B

    @classmethod
    def from_config(cls, cfg: Any) -> "Reconcile":
        """From the whole :class:`agent.config.Config` (its ``serial`` list and ``station.timezone``)."""
        meters = [p for p in cfg.serial if p.resolved_role == "dap_meter"]
        window = max((p.reconcile_window_s for p in meters), default=900.0)
        return cls({p.device_id: p.reconcile_tolerance for p in meters}, window,
                   ZoneInfo(cfg.station.timezone) if cfg.station.timezone else None,
                   {p.device_id: p.reconcile_plane for p in meters if p.reconcile_plane})

    def __call__(self, tx: sqlite_utils.Database, ingest: Any) -> None:
        report = ingest.report
        if report.kind != "projection" or ingest.saved.superseded_by:
            return
        span = self._span(report)
        if span is None:
            return
        procedure = self._match(tx, ingest.station, *span)
        if procedure is None:
            return
        pid, uid, device, meter = procedure
        rdsr = self._rdsr_dap(report, device)
        if not rdsr or rdsr <= 0:
            return
        tolerance = self.tolerances.get(device, DEFAULT_TOLERANCE)
        difference = (meter - rdsr) / rdsr
        finding = abs(difference) > tolerance
        cur = tx.execute(
            "INSERT OR IGNORE INTO serial_reconciliations (procedure_id, sop_instance_uid, study_instance_uid,"
            " meter_dap_Gym2, rdsr_dap_Gym2, difference_rel, tolerance_rel, finding, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [pid, report.sop_instance_uid, report.study_instance_uid, meter, rdsr, difference, tolerance,
             int(finding), utc_iso(time.time())])
        if not cur.rowcount:
            return
        body = {"type": "reconciliation", "station": ingest.station, "procedure_id": uid, "device": device,
                "sop_instance_uid": report.sop_instance_uid, "study_instance_uid": report.study_instance_uid,
                "meter_dap_Gym2": meter, "rdsr_dap_Gym2": rdsr, "difference_rel": difference,
                "tolerance_rel": tolerance, "qa_finding": finding}
        outbox.enqueue(tx, "reading", outbox.event_id("reading", "reconciliation", uid, report.sop_instance_uid),
                       body)
        (log.warning if finding else log.info)(
            "meter_rdsr_mismatch" if finding else "meter_rdsr_agree", procedure_id=uid, device=device,
            sop_instance_uid=report.sop_instance_uid, meter_dap_Gym2=meter, rdsr_dap_Gym2=rdsr,
            difference_rel=round(difference, 4), tolerance_rel=tolerance)

    def _rdsr_dap(self, report: Any, device: str) -> Optional[float]:
        """The RDSR's DAP that the meter ``device`` measured: the total, or on a biplane system the DAP of the
        events of the meter's plane (None when the meter's plane is not configured)."""
        plane = None
        if len({e.acquisition_plane for e in report.events if e.acquisition_plane in ACQUISITION_PLANES.values()}) > 1:
            plane = ACQUISITION_PLANES.get(self.planes.get(device) or "")
            if plane is None:
                log.info("meter_rdsr_not_compared", device=device, sop_instance_uid=report.sop_instance_uid,
                         hint="a biplane RDSR's total adds both tubes: set reconcile_plane for this DAP meter")
                return None
        elif report.totals.dap_total_Gym2 is not None:
            return report.totals.dap_total_Gym2
        doses = [e.dap_Gym2 for e in report.events
                 if e.dap_Gym2 is not None and (plane is None or e.acquisition_plane == plane)]
        return sum(doses) if doses else None

    def _span(self, report: Any) -> Optional[tuple[float, float]]:
        """UNIX times of the first and last irradiation event (or the study time)."""
        stamps = [self._epoch(e.datetime_started) for e in report.events if e.datetime_started]
        stamps = [s for s in stamps if s is not None] or [self._epoch(report.study.datetime)]
        stamps = [s for s in stamps if s is not None]
        return (min(stamps), max(stamps)) if stamps else None

    def _epoch(self, text: Optional[str]) -> Optional[float]:
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.tz) if self.tz else moment.astimezone()
        return moment.timestamp()

    def _match(self, tx: sqlite_utils.Database, station: str, start: float, end: float):
        """Of the procedures whose dose period lies within the events' span ± window, the one that overlaps
        the span itself the most, or, when none does, lies nearest to it.

        The window only admits candidates (a modality clock may be minutes off): measured against the
        widened span, every procedure of a busy room is wholly inside it, and the longest one took the
        RDSRs of its neighbours."""
        rows = tx.execute(
            "SELECT id, uid, device, dap_Gym2, first_dose_t, last_dose_t FROM serial_procedures"
            " WHERE station = ? AND dap_Gym2 > 0 AND first_dose_t <= ? AND last_dose_t >= ?",
            [station, end + self.window_s, start - self.window_s]).fetchall()
        if not rows:
            return None
        # overlap with the span (negative: the gap between them), then the nearer start
        best = max(rows, key=lambda r: (min(end, r[5]) - max(start, r[4]), -abs(r[4] - start)))
        return best[0], best[1], best[2], best[3]
