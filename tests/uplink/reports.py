"""Dose reports for uplink tests, built from the record types (with PHI, as extraction yields them)."""
from __future__ import annotations

from agent.extract.record import PHI, Device, Event, Patient, Report, Study, Totals
from agent.pipeline import Ingest
from agent.store.reports import Receipt, save_report

NAME, BIRTH, PID = "Testperson^Erika", "19640812", "PAT-7781"


def ct_report(n: int = 0, study: str = "1.2.826.0.1.3680043.10.1.1", patient_id: str = PID) -> Report:
    """A CT report with two events; values with many digits so that rounding would show."""
    events = [Event(irradiation_event_uid=f"{study}.{n}.{i}", event_type="Helical", protocol="Thorax",
                    ctdivol_mGy=7.8312 + i, dlp_mGycm=301.04701 + n, ssde_mGy=0.1 + 0.2)
              for i in (1, 2)]
    return Report(
        sop_instance_uid=f"{study}.9{n}", sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
        study_instance_uid=study, series_instance_uid=f"{study}.8", kind="ct", modality="CT", source="rdsr",
        template="10011", device=Device(manufacturer="ACME", model="Scan 64", station_name="CT1"),
        study=Study(datetime="2025-03-01T10:15:00", description="CT THORAX", accession_number=f"ACC{n}"),
        patient=Patient(age_years=61.0, sex="F", weight_kg=70.5),
        totals=Totals(ct_dlp_total_mGycm=sum(e.dlp_mGycm for e in events), ct_event_count=2),
        events=events, phi=PHI(patient_id=patient_id, patient_name=NAME, birth_date=BIRTH))


def ingest(tx, report: Report, station: str = "ct-01") -> Ingest:
    """Save ``report`` like the pipeline does and return what a stage receives."""
    receipt = Receipt(received_at="2025-03-01T10:20:00.000000Z", origin="import", path="unused", sha256="0" * 64,
                      size_bytes=1000, sop_instance_uid=report.sop_instance_uid)
    saved = save_report(tx, report, receipt, station)
    return Ingest(report=report, receipt=receipt, saved=saved, station=station)
