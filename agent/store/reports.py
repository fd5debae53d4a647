"""Receipts, reports and irradiation events; study totals that never double-count an event.

Modalities re-send reports and some (Siemens CT) send a *cumulative* RDSR after every
exposure, each containing all earlier events.  A report whose irradiation events are all
contained in a later report of the same study is marked ``superseded_by`` that report, and a
study's totals are taken from the reports that are not superseded.  Doses read from image headers
or a dose screen are superseded, in the same way, by a dose report (RDSR) of the same study, kind
and unit, whichever arrives first: they are the same exposures (:data:`STRUCTURED`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Optional

import sqlite_utils

from agent import phi
from agent.extract.record import PHI, Report

# A study's dose report (an RDSR) states every exposure of the modality that sends it; the doses in
# its images' headers (or a dose screen) state some of the same exposures again, under event UIDs
# of their own.  Where a study has both, of one kind and from one unit, the structured report's doses count.
STRUCTURED = ("rdsr", "enhanced-sr")
FROM_HEADERS = ("image-header", "secondary-capture")
CONTENT = "content:"  # the identity of a report without event UIDs: its dose content (:func:`_identities`)

SUMMED_TOTALS = [
    "ct_dlp_total_mGycm", "ct_event_count", "dap_total_Gym2", "dose_rp_total_Gy",
    "fluoro_dap_total_Gym2", "fluoro_dose_rp_total_Gy", "fluoro_time_total_s",
    "acquisition_dap_total_Gym2", "acquisition_dose_rp_total_Gy", "acquisition_time_total_s",
    "radiographic_frames_total", "administered_activity_MBq",
]
# When active reports of one study overlap without one containing the other, totals are
# recomputed from the distinct events: (event field, which events, total field).  A total no
# event field gives is then the largest one a report states (a lower bound, never a double count).
EVENT_SUMS = [
    ("dlp_mGycm", "all", "ct_dlp_total_mGycm"),
    ("dap_Gym2", "all", "dap_total_Gym2"),
    ("dose_rp_Gy", "all", "dose_rp_total_Gy"),
    ("dap_Gym2", "fluoro", "fluoro_dap_total_Gym2"),
    ("dose_rp_Gy", "fluoro", "fluoro_dose_rp_total_Gy"),
    ("irradiation_duration_s", "fluoro", "fluoro_time_total_s"),
    ("dap_Gym2", "acquisition", "acquisition_dap_total_Gym2"),
    ("dose_rp_Gy", "acquisition", "acquisition_dose_rp_total_Gy"),
    ("irradiation_duration_s", "acquisition", "acquisition_time_total_s"),
]


# What a second object under a stored SOP Instance UID must state alike to be that report sent again (a no-op):
# where its dose is counted (the study and its date), the totals, and each event's or administration's dose.
# Not the bytes: a router that re-encodes the transfer syntax or the character set sends the same report.
DOSE_EVENT_FIELDS = ("irradiation_event_uid", "datetime_started", "event_type", "ctdivol_mGy", "dlp_mGycm", "ssde_mGy",
                     "dap_Gym2", "dose_rp_Gy", "agd_mGy", "entrance_exposure_at_rp_mGy", "irradiation_duration_s",
                     "effective_dose_mSv")
DOSE_ADMINISTRATION_FIELDS = ("event_uid", "radiopharmaceutical", "radionuclide", "datetime_started", "activity_MBq",
                              "effective_dose_mSv")
DIFFERS = "duplicate_differs"  # the receipt of such an object whose dose content differs: kept in failed/, not stored


@dataclass
class Receipt:
    received_at: str
    origin: str  # 'dicom' | 'import'
    path: str
    sha256: str
    size_bytes: int
    calling_ae: Optional[str] = None
    called_ae: Optional[str] = None
    peer: Optional[str] = None
    sop_instance_uid: Optional[str] = None
    sop_class_uid: Optional[str] = None
    transfer_syntax: Optional[str] = None


@dataclass
class SaveResult:
    """What a save changed: the stages after the store decide what to check and send from it."""

    duplicate: bool  # this SOP instance was stored before: nothing changed
    receipt_id: Optional[int]  # None with ``differs``: the caller keeps the object and records its receipt
    new_event_uids: list[str] = field(default_factory=list)  # events never seen before
    superseded: list[str] = field(default_factory=list)  # reports this one supersedes
    superseded_by: Optional[str] = None  # set if an already stored report contains all our events
    repeats: Optional[str] = None  # a stored report with no event UIDs and the same dose content: this one again
    record_json: Optional[str] = None  # a stored report's extract contract as written (no PHI); None for a duplicate
    differs: list[str] = field(default_factory=list)  # a duplicate: what of its dose content is not the stored one's


def record_receipt(tx: sqlite_utils.Database, receipt: Receipt, status: str, reason: str | None = None) -> int:
    row = dict(receipt.__dict__, status=status, reason=reason)
    return _insert(tx, "receipts", row)


def save_report(tx: sqlite_utils.Database, report: Report, receipt: Receipt, station: str) -> SaveResult:
    """Store ``report`` (idempotent on SOP Instance UID). Call inside ``Store.transaction()``.

    A report whose SOP Instance UID is stored already is not stored again: the first one stays the record.
    If its dose content is the stored one's, its receipt says ``duplicate``; if not (:func:`dose_differences`),
    no receipt is recorded and ``differs`` says what differs, for the caller to keep the object for inspection."""
    stored = tx.execute("SELECT r.record, c.sha256 FROM reports r LEFT JOIN receipts c ON c.id = r.receipt_id "
                        "WHERE r.sop_instance_uid = ?", [report.sop_instance_uid]).fetchone()
    if stored:  # (the same bytes are the same report, whatever a newer version of the agent reads in them)
        differs = [] if stored[1] == receipt.sha256 else dose_differences(json.loads(stored[0]), report.to_dict())
        if differs:
            return SaveResult(duplicate=True, receipt_id=None, differs=differs)
        rid = record_receipt(tx, receipt, "duplicate", "SOP instance already stored")
        return SaveResult(duplicate=True, receipt_id=rid)

    rid = record_receipt(tx, receipt, "stored")
    uids = set(report.event_uids)
    record = report.to_dict()
    keys = _identities(record)
    result = SaveResult(duplicate=False, receipt_id=rid)

    if report.study_instance_uid:
        for other_uid, other_kind, other_source, other_record in tx.execute(
            "SELECT sop_instance_uid, kind, source, record FROM reports "
            "WHERE study_instance_uid = ? AND superseded_by IS NULL ORDER BY received_at DESC, rowid DESC",
            [report.study_instance_uid],
        ).fetchall():
            other_record = json.loads(other_record)
            if other_kind == report.kind and _same_equipment(record, other_record):
                if report.source in STRUCTURED and other_source in FROM_HEADERS:
                    result.superseded.append(other_uid)
                    continue
                if report.source in FROM_HEADERS and other_source in STRUCTURED:
                    result.superseded_by = result.superseded_by or other_uid
                    continue
            other = _identities(other_record)
            if not keys or not other:
                continue
            if other <= keys:
                result.superseded.append(other_uid)
                if other == keys and next(iter(keys)).startswith(CONTENT):
                    result.repeats = result.repeats or other_uid
            elif keys <= other and result.superseded_by is None:
                result.superseded_by = other_uid

    result.record_json = json.dumps(record, separators=(",", ":"))
    _insert(tx, "reports", {
        "sop_instance_uid": report.sop_instance_uid,
        "receipt_id": rid,
        "received_at": receipt.received_at,
        "station": station,
        "sop_class_uid": report.sop_class_uid,
        "study_instance_uid": report.study_instance_uid,
        "series_instance_uid": report.series_instance_uid,
        "kind": report.kind, "modality": report.modality, "source": report.source,
        "manufacturer": report.device.manufacturer, "model": report.device.model,
        "station_name": report.device.station_name,
        "study_datetime": report.study.datetime, "study_description": report.study.description,
        "accession_number": report.study.accession_number,
        "procedure_reported": report.study.procedure_reported,
        "patient_id": report.phi.patient_id, "patient_name": report.phi.patient_name,
        "patient_birth_date": report.phi.birth_date,
        "patient_other_ids": "\\".join(report.phi.other_patient_ids) or None,
        "age_years": report.patient.age_years, "sex": report.patient.sex, "weight_kg": report.patient.weight_kg,
        "event_count": len(report.events),
        "superseded_by": result.superseded_by,
        "record": result.record_json,
    })
    for old in result.superseded:
        tx.execute("UPDATE reports SET superseded_by = ? WHERE sop_instance_uid = ?", [report.sop_instance_uid, old])

    known = {
        row[0] for row in tx.execute(
            f"SELECT irradiation_event_uid FROM events WHERE irradiation_event_uid IN ({','.join('?' * len(uids))})",
            list(uids),
        ).fetchall()
    } if uids else set()
    for event, event_dict in zip(report.events, record.get("events", [])):
        uid = event.irradiation_event_uid
        if not uid:
            continue
        if uid in known:
            if result.superseded_by is None:
                tx.execute("UPDATE events SET sop_instance_uid = ? WHERE irradiation_event_uid = ?",
                           [report.sop_instance_uid, uid])
            continue
        known.add(uid)
        if result.superseded_by is None:  # (images' exposures that the study's RDSR states already are not new)
            result.new_event_uids.append(uid)
        _insert(tx, "events", {
            "irradiation_event_uid": uid,
            "sop_instance_uid": report.sop_instance_uid,
            "study_instance_uid": report.study_instance_uid,
            "first_seen_at": receipt.received_at,
            "event_type": event.event_type, "datetime_started": event.datetime_started,
            "protocol": event.protocol, "target_region": event.target_region,
            "ctdivol_mGy": event.ctdivol_mGy, "dlp_mGycm": event.dlp_mGycm, "ssde_mGy": event.ssde_mGy,
            "dap_Gym2": event.dap_Gym2, "dose_rp_Gy": event.dose_rp_Gy, "agd_mGy": event.agd_mGy,
            "record": json.dumps(event_dict, separators=(",", ":")),
        })
    return result


def dose_differences(stored: dict[str, Any], received: dict[str, Any]) -> list[str]:
    """What of ``received``'s dose content (extract contract records, no PHI) is not ``stored``'s: the names of
    the values, never the values (a date is identifying).  Empty: the same report."""
    out = [name for name, key in (("study_instance_uid", lambda r: r.get("study_instance_uid")),
                                  ("study datetime", lambda r: (r.get("study") or {}).get("datetime")))
           if key(stored) != key(received)]
    totals = stored.get("totals") or {}, received.get("totals") or {}
    out += [f"totals.{k}" for k in sorted(set(totals[0]) | set(totals[1])) if totals[0].get(k) != totals[1].get(k)]
    for name, keys in (("events", DOSE_EVENT_FIELDS), ("administrations", DOSE_ADMINISTRATION_FIELDS)):
        a, b = stored.get(name) or [], received.get(name) or []
        if len(a) != len(b):
            out.append(f"{name} ({len(a)} stored, {len(b)} received)")
            continue
        for k in keys:
            n = sum(x.get(k) != y.get(k) for x, y in zip(a, b))
            if n:
                out.append(f"{name}.{k} ({n} of {len(a)})")
    return out


def _insert(tx: sqlite_utils.Database, table: str, row: dict[str, Any]) -> int:
    """One plain INSERT; returns the rowid.  (``Table.insert`` would first read the schema and open a
    savepoint: seven more statements per row on the path of every received report.)"""
    sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
    return tx.execute(sql, list(row.values())).lastrowid


def _event_uids(record: dict[str, Any]) -> set[str]:
    return {e["irradiation_event_uid"] for e in record.get("events", []) if e.get("irradiation_event_uid")}


def _same_equipment(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two reports may come from one unit: not where both name a device serial number, or both a
    station name, and these differ (the names of a manufacturer and model vary between a unit's RDSR and
    its images: "CARESTREAM" and "CARESTREAM HEALTH").  A study done in two rooms keeps both rooms' doses."""
    da, db = a.get("device") or {}, b.get("device") or {}
    for key in ("serial_number", "station_name"):
        x, y = (str(d.get(key) or "").strip().upper() for d in (da, db))
        if x and y and x != y:
            return False
    return True


def _identities(record: dict[str, Any]) -> set[str]:
    """What tells a report's exposures from another report's, for supersession: its irradiation event UIDs and
    its Radiopharmaceutical Administration Event UIDs (an RRDSR has no irradiation events: without them, one sent
    again under a new SOP Instance UID counted its activity twice).  A report with neither (a CT dose screen, a
    totals-only summary) is told apart by its dose content: the same content under a new SOP Instance UID is the
    same report sent again.  Not an image: one that states no acquisition time (no derived UID) may be a retake
    at the same technique, each exposure to be counted (docs/extraction.md)."""
    found = _event_uids(record) | {a["event_uid"] for a in record.get("administrations", []) if a.get("event_uid")}
    if found or record.get("source") == "image-header" or (record.get("source"), record.get("kind")) == (
            "secondary-capture", "projection"):  # (an image, or an image sent as a secondary capture)
        return found
    content = {k: record.get(k) for k in ("kind", "source", "totals", "events", "administrations")}
    content["device"] = {k: (record.get("device") or {}).get(k) for k in ("manufacturer", "model", "serial_number")}
    return {CONTENT + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()}


def study_identity(db: sqlite_utils.Database, study_instance_uid: Optional[str]) -> Optional[PHI]:
    """The patient of a study as the store has it (from a report that names one), for finding them in
    free text; None if no report of the study carries a name, id or birth date."""
    if not study_instance_uid:
        return None
    row = db.execute("SELECT patient_id, patient_name, patient_birth_date, patient_other_ids FROM reports "
                     "WHERE study_instance_uid = ? AND COALESCE(patient_id, patient_name, patient_birth_date, "
                     "patient_other_ids) IS NOT NULL LIMIT 1", [study_instance_uid]).fetchone()
    if not row:
        return None
    return PHI(*row[:3], other_patient_ids=tuple(v for v in (row[3] or "").split("\\") if v))


def study_totals(db: sqlite_utils.Database, study_instance_uid: Optional[str],
                 sop_instance_uid: Optional[str] = None) -> dict[str, Any]:
    """Dose totals of one study over the reports that are not superseded, each event counted once.
    A report without a Study Instance UID is a study of its own: give None and its ``sop_instance_uid``."""
    if study_instance_uid is not None:
        return combine_totals(study_records(db, study_instance_uid))
    return combine_totals([json.loads(r[0]) for r in db.execute(
        "SELECT record FROM reports WHERE sop_instance_uid = ? AND superseded_by IS NULL", [sop_instance_uid])])


def study_records(db: sqlite_utils.Database, study_instance_uid: Optional[str]) -> list[dict[str, Any]]:
    """The records (extract contract, no PHI) of a study's reports that are not superseded, oldest first."""
    rows = db.execute("SELECT record FROM reports WHERE study_instance_uid = ? AND superseded_by IS NULL "
                      "ORDER BY received_at, rowid", [study_instance_uid]).fetchall()
    return [json.loads(r[0]) for r in rows]


def combine_totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the stated totals of reports with disjoint event sets; recompute from distinct events otherwise."""
    out: dict[str, Any] = {}
    seen: set[str] = set()
    overlap = False
    for rec in records:
        uids = _event_uids(rec)
        if uids & seen:
            overlap = True
        seen |= uids
        totals = rec.get("totals", {})
        for key in SUMMED_TOTALS:
            if totals.get(key) is not None:
                out[key] = out.get(key, 0) + totals[key]
        for side, value in (totals.get("agd_total_mGy") or {}).items():
            out.setdefault("agd_total_mGy", {})
            out["agd_total_mGy"][side] = out["agd_total_mGy"].get(side, 0) + value
    if overlap:
        events = {}
        for rec in records:
            for e in rec.get("events", []):
                events[e.get("irradiation_event_uid") or id(e)] = e
        for key in [k for k in SUMMED_TOTALS if k in out]:  # stated by some report: at most the largest
            out[key] = max(r["totals"][key] for r in records if r.get("totals", {}).get(key) is not None)
        for side in list(out.get("agd_total_mGy", {})):
            out["agd_total_mGy"][side] = max((r.get("totals", {}).get("agd_total_mGy") or {}).get(side) or 0
                                             for r in records)
        for event_key, which, total_key in EVENT_SUMS:
            values = [Decimal(str(e[event_key])) for e in events.values()
                      if e.get(event_key) is not None and which in ("all", event_category(e))]
            if values and total_key in out:
                out[total_key] = float(sum(values))
        if "ct_event_count" in out:
            out["ct_event_count"] = sum(1 for e in events.values() if e.get("ctdivol_mGy") is not None or e.get("dlp_mGycm") is not None)
    out["reports"] = len(records)
    # an event without a UID (a dose screen's series, an image without an acquisition time) is one of its own
    out["events"] = len(seen) + sum(1 for rec in records for e in rec.get("events", [])
                                    if not e.get("irradiation_event_uid"))
    return out


def event_category(event: dict[str, Any]) -> str:
    """``fluoro`` for a fluoroscopy event (TID 10003 Irradiation Event Type), else ``acquisition``."""
    return "fluoro" if "fluoro" in (event.get("event_type") or "").lower() else "acquisition"


def list_studies(db: sqlite_utils.Database, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored studies, newest first, each with its totals (no PHI: a patient's name, birth date or id
    that a modality wrote into the description or the accession number is removed, :func:`without_identity`).

    A report without a Study Instance UID is a study of its own (``study_instance_uid`` None, and its
    ``sop_instance_uid``): reports of different patients that all lack one are never merged."""
    sql = """
        SELECT study_instance_uid, MAX(received_at) AS last_received, MIN(station) AS station,
               MIN(modality) AS modality, MIN(kind) AS kind, MIN(study_datetime) AS study_datetime,
               MIN(accession_number) AS accession_number, MIN(study_description) AS description,
               MIN(manufacturer) AS manufacturer, MIN(model) AS model, COUNT(*) AS report_count,
               MIN(sop_instance_uid) AS sop_instance_uid
        FROM reports {where} GROUP BY COALESCE(study_instance_uid, 'sop:' || sop_instance_uid)
        ORDER BY last_received DESC
    """
    args: list[Any] = []
    where = ""
    if limit:  # the newest studies found from the newest reports (an index walk), not a sort of every study:
        newest = _newest_studies(db, int(limit))  # the console asks after every report, and a store grows for years
        uids = [uid for uid, _ in newest if uid is not None]
        sops = [sop for uid, sop in newest if uid is None]
        where = "WHERE " + " OR ".join(
            [f"study_instance_uid IN ({','.join('?' * len(uids))})"] * bool(uids)
            + [f"(study_instance_uid IS NULL AND sop_instance_uid IN ({','.join('?' * len(sops))}))"] * bool(sops)
            or ["0"])
        args = uids + sops
    studies = []
    for row in db.query(sql.format(where=where), args):
        row["totals"] = study_totals(db, row["study_instance_uid"], row["sop_instance_uid"])
        if row["study_instance_uid"] is not None:
            del row["sop_instance_uid"]
        studies.append(without_identity(db, row))
    return studies


def _newest_studies(db: sqlite_utils.Database, n: int) -> list[tuple[Optional[str], Optional[str]]]:
    """The ``n`` most recently received studies (reports newest first, through their index), as
    (study UID, None), or (None, SOP instance UID) for a report without a study UID."""
    found: list[tuple[Optional[str], Optional[str]]] = []
    for uid, sop in db.execute("SELECT study_instance_uid, sop_instance_uid FROM reports INDEXED BY reports_received "
                               "ORDER BY received_at DESC"):
        key = (uid, None) if uid is not None else (None, sop)
        if key not in found:
            found.append(key)
            if len(found) == n:
                break
    return found


def without_identity(db: sqlite_utils.Database, study: dict[str, Any]) -> dict[str, Any]:
    """``study`` (a row with ``study_instance_uid``, ``description`` and/or ``accession_number``) with the
    patient's name and birth date removed from both, and the id from the description (an accession number
    may be the patient's id by a site's numbering: it is the technologist's handle on the exam)."""
    patient = study_identity(db, study.get("study_instance_uid"))
    if patient is None:
        return study
    if study.get("description"):
        study["description"] = phi.redact(study["description"], phi.pattern(patient))
    if study.get("accession_number"):
        study["accession_number"] = phi.redact(study["accession_number"], phi.pattern(patient, include_id=True))
    return study


# not the rejected receipts whose files were pruned after [store] rejected_retention_days (agent.store.failed)
_STILL_KEPT = "NOT EXISTS (SELECT 1 FROM spool_pruned p WHERE p.receipt_id = receipts.id)"


KEPT_STATUSES = ("rejected", "error", DIFFERS)  # receipts of objects kept in failed/ for inspection
_KEPT = f"status IN ({', '.join(repr(s) for s in KEPT_STATUSES)})"


def failed_receipts(db: sqlite_utils.Database, limit: int = 50) -> list[dict[str, Any]]:
    """Receipts that were kept but not stored as a report (rejected, unreadable, or a stored SOP instance
    with other dose content), newest first; not the rejected ones pruned after ``[store] rejected_retention_days``."""
    return list(db.query(
        "SELECT id, received_at, origin, calling_ae, sop_class_uid, path, status, reason FROM receipts "
        f"WHERE {_KEPT} AND {_STILL_KEPT} ORDER BY id DESC LIMIT ?", [limit]))


def count_failed(db: sqlite_utils.Database) -> int:
    """How many receipts were kept but not stored as a report (:func:`failed_receipts` lists the newest)."""
    return db.execute(f"SELECT COUNT(*) FROM receipts WHERE {_KEPT} AND {_STILL_KEPT}").fetchone()[0]


def iter_reports(db: sqlite_utils.Database, since: str | None = None) -> Iterable[dict[str, Any]]:
    """Every stored report's contract record with its station and receipt time (for statistics)."""
    sql = "SELECT station, received_at, superseded_by, record FROM reports"
    args: list[Any] = []
    if since:
        sql += " WHERE received_at >= ?"
        args.append(since)
    for station, received_at, superseded_by, record in db.execute(sql + " ORDER BY received_at", args).fetchall():
        yield {"station": station, "received_at": received_at, "superseded_by": superseded_by,
               "record": json.loads(record)}
