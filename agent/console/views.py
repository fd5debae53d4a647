"""What the console shows, read from the store (read-only connections) and shaped for the page.

Nothing here writes.  Values stay in the store's canonical units; each shown value also carries
a ``display`` string converted exactly (the checks' decimal unit table: 0.0312 Gy·m² shows as
312 Gy·cm², not 312.00000000000006) into the unit technologists read on the modality.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Optional

import sqlite_utils
from pydicom.uid import UID

from agent.checks import Rules, units
from agent.checks.study import view
from agent.checks.tables import DRL_KINDS, LevelRow
from agent.extract import SR_CLASSES
from agent.store.reports import DIFFERS, list_studies, study_records, without_identity

# key dose → (label, checks quantity, unit shown); values are stored in the quantity's canonical unit
DISPLAY = {
    "ctdivol_max_mGy": ("CTDIvol max", "CTDIvol", "mGy"),
    "ct_dlp_total_mGycm": ("DLP", "DLP", "mGy·cm"),
    "dap_total_Gym2": ("DAP", "KAP", "Gy·cm²"),
    "dose_rp_total_Gy": ("Ka,r", "Ka_r", "mGy"),
    "fluoro_time_total_s": ("Fluoro time", "fluoro_time", "min"),
    "agd_total_mGy": ("AGD", "AGD", "mGy"),
    "administered_activity_MBq": ("Activity", None, "MBq"),
}
CHECKS_QUANTITY = {key: quantity for key, (_, quantity, _) in DISPLAY.items() if quantity}
SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}


def display(key: str, value: Optional[float]) -> str:
    """A stored value of ``key`` in the unit shown, exact (fluoroscopy time to 0.1 min)."""
    if value is None:
        return "–"
    _, quantity, unit = DISPLAY[key]
    exact = units.exact(value)
    shown = units.from_canonical(units.QUANTITIES[quantity], exact, unit) if quantity else exact
    return format(shown.quantize(Decimal("0.1")), "f") if unit == "min" else units.text(shown)


def dose(key: str, value: Optional[float]) -> dict[str, Any]:
    label, _, unit = DISPLAY[key]
    return {"quantity": key, "label": label, "value": value, "unit": unit, "display": display(key, value),
            "level": "none", "reference": None}


def key_doses(db: sqlite_utils.Database, study: dict[str, Any]) -> list[dict[str, Any]]:
    """The doses a technologist checks for this kind of study (CT: CTDIvol, DLP; projection: DAP, Ka,r, time)."""
    totals = study["totals"]
    out: list[dict[str, Any]] = []
    if study.get("kind") == "ct":
        # from the records of the reports that count, not the events table: a dose screen's series have no
        # event UID, and so no row there (its study showed no CTDIvol)
        records = study_records(db, study["study_instance_uid"]) if study["study_instance_uid"] is not None else [
            json.loads(r[0]) for r in db.execute("SELECT record FROM reports WHERE sop_instance_uid = ?",
                                                 [study.get("sop_instance_uid")]).fetchall()]  # no study UID: its own
        ctdi = max((e["ctdivol_mGy"] for rec in records for e in rec.get("events", [])
                    if e.get("ctdivol_mGy") is not None), default=None)
        out.append(dose("ctdivol_max_mGy", ctdi))
        out.append(dose("ct_dlp_total_mGycm", totals.get("ct_dlp_total_mGycm")))
    elif totals.get("agd_total_mGy"):
        out.append(dose("agd_total_mGy", max(totals["agd_total_mGy"].values())))
    elif study.get("kind") == "radiopharmaceutical":
        out.append(dose("administered_activity_MBq", totals.get("administered_activity_MBq")))
    else:
        for quantity in ("dap_total_Gym2", "dose_rp_total_Gy", "fluoro_time_total_s"):
            if totals.get(quantity) is not None:
                out.append(dose(quantity, totals[quantity]))
        if not out:  # a report that states none of them: say so, rather than an empty cell
            out.append(dose("dap_total_Gym2", None))
    # a study of more than one kind (PET/CT, SPECT/CT, an angiography room with a CT) is shown as its first kind
    # (ct before projection before radiopharmaceutical): the doses of the others too
    if study.get("kind") == "ct":
        out += [dose(q, totals[q]) for q in ("dap_total_Gym2", "dose_rp_total_Gy", "fluoro_time_total_s")
                if totals.get(q) is not None]
    if study.get("kind") != "radiopharmaceutical" and totals.get("administered_activity_MBq") is not None:
        out.append(dose("administered_activity_MBq", totals["administered_activity_MBq"]))
    return out


def recent_studies(db: sqlite_utils.Database, limit: int = 8, show_patient_names: bool = False) -> list[dict[str, Any]]:
    """The last studies, newest first: accession number, exam, time and key doses (no patient name
    unless ``show_patient_names``)."""
    out = []
    for row in list_studies(db, limit=limit):
        item = {
            "study_instance_uid": row["study_instance_uid"], "accession_number": row["accession_number"],
            "exam": row["description"], "modality": row["modality"], "kind": row["kind"],
            "study_datetime": row["study_datetime"], "received_at": row["last_received"],
            "doses": key_doses(db, row), "level": "none", "alerts": 0,
        }
        if show_patient_names:
            (name,) = db.execute("SELECT MIN(patient_name) FROM reports WHERE study_instance_uid = ?",
                                 [row["study_instance_uid"]]).fetchone()
            item["patient_name"] = (name or "").replace("^", " ").strip() or None
        out.append(item)
    return out


DOSE_LEVEL = {"info": "above", "warning": "warning", "critical": "critical"}


def references(db: sqlite_utils.Database, rules: Rules, station: str, study_uid: str) -> dict[str, LevelRow]:
    """The reference level (DRL or local DRL) that applies to each quantity of the stored study, as the
    checks match it (exam, patient group, phantom)."""
    records = study_records(db, study_uid)
    if not records:
        return {}
    study = view(records, rules, station)
    out: dict[str, LevelRow] = {}
    for quantity in set(CHECKS_QUANTITY.values()):
        rows = rules.select(DRL_KINDS, modality=study.modality, quantity=quantity, exam=study.exam.name,
                            region=study.exam.region, age=study.age, weight=study.weight)
        if rows:
            out[quantity] = min(rows, key=lambda r: r.threshold)
    return out


def colour(study: dict[str, Any], alerts: list[dict[str, Any]], refs: dict[str, LevelRow]) -> None:
    """Colour each key dose against its reference level, and the study by its alerts.

    A dose is ``critical``/``warning``/``above`` when an alert on its quantity was raised for the study
    (``above``: at or above a DRL, an info alert), else ``ok`` below the applicable reference level,
    ``above`` at or above it, and ``none`` when no reference level applies.
    """
    study["alerts"] = len(alerts)
    study["level"] = max((a.get("severity") or "info" for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 0),
                         default="none")
    for d in study["doses"]:
        quantity = CHECKS_QUANTITY.get(d["quantity"])
        raised = [a for a in alerts if a.get("quantity") == quantity]
        ref = refs.get(quantity) if quantity else None
        if ref is not None:
            d["reference"] = f"{ref.kind.replace('_', ' ')} {units.text(ref.value)} {ref.unit} ({ref.exam}; {ref.source_text})"
        if raised:
            worst = max(raised, key=lambda a: SEVERITY_RANK.get(a.get("severity") or "info", 0))
            d["level"] = DOSE_LEVEL.get(worst.get("severity") or "info", "above")
            d["reference"] = worst.get("message")
        elif ref is not None and d["value"] is not None:
            d["level"] = "above" if Decimal(repr(d["value"])) >= ref.threshold else "ok"


def with_accession(db: sqlite_utils.Database, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each alert's study accession number (the technologist's handle on the exam)."""
    uids = {a["study_instance_uid"] for a in alerts if a.get("study_instance_uid")}
    found: dict[str, str] = {}
    if uids:
        found = dict(db.execute(
            f"SELECT study_instance_uid, MIN(accession_number) FROM reports WHERE study_instance_uid IN "
            f"({','.join('?' * len(uids))}) GROUP BY study_instance_uid", list(uids)).fetchall())
    shown = {uid: without_identity(db, {"study_instance_uid": uid, "accession_number": number})["accession_number"]
             for uid, number in found.items()}  # a modality may have put the patient's name there
    return [dict(a, accession_number=shown.get(a.get("study_instance_uid") or "")) for a in alerts]


# DAP meter procedure totals on the bus → (checks quantity for the threshold marks, how it is shown)
PROCEDURE_GAUGES = {"dap_Gym2": ("KAP", "dap_total_Gym2"), "air_kerma_Gy": ("Ka_r", "dose_rp_total_Gy"),
                    "fluoro_time_s": ("fluoro_time", "fluoro_time_total_s")}


def procedure(reading: dict[str, Any], marks: dict[str, list[tuple[str, float]]]) -> Optional[dict[str, Any]]:
    """The gauges of a DAP meter's current procedure from its bus ``reading``, or None for other readings.

    ``reading`` is what the serial source publishes after each committed batch: ``station``, ``device``,
    ``role``, ``procedure_id``, ``started_at`` and the procedure's cumulative ``dap_Gym2``,
    ``air_kerma_Gy`` (and ``fluoro_time_s`` when the meter gives it), in canonical units.  ``marks``
    maps a checks quantity (KAP, Ka_r, fluoro_time) to its ``(label, value)`` levels in the same units.
    """
    if reading.get("role", "dap_meter") != "dap_meter" or not reading.get("procedure_id"):
        return None
    gauges = {key: gauge(shown, reading[key], marks.get(quantity, []))
              for key, (quantity, shown) in PROCEDURE_GAUGES.items() if reading.get(key) is not None}
    return {"procedure_id": reading["procedure_id"], "device": reading.get("device"),
            "started_at": reading.get("started_at"), "gauges": gauges}


def gauge(total: str, value: Optional[float], marks: list[tuple[str, float]]) -> dict[str, Any]:
    """One bar: the value, its marks, how far along the highest mark it is, and its colour level."""
    label, _, unit = DISPLAY[total]
    passed = [m for m in marks if value is not None and value >= m[1]]
    top = max((m[1] for m in marks), default=None)
    return {
        "label": label, "unit": unit, "value": value, "display": display(total, value),
        "marks": [{"label": name, "value": v, "display": display(total, v),
                   "position": v / top if top else None} for name, v in marks],
        "fraction": min(value / top, 1.0) if top and value is not None else None,
        "level": "critical" if top is not None and passed and passed[-1][1] >= top else ("warning" if passed else "ok"),
    }


SET_ASIDE_SHOWN = ("error", DIFFERS)  # a dose report that got no dose check; "rejected" (not a dose object) is counted


def set_aside(db: sqlite_utils.Database, since: str, limit: int = 20) -> dict[str, Any]:
    """The objects received since ``since`` (UTC, as receipts say it) that were kept in failed/ unchecked:
    the newest ``limit`` unreadable ones and re-used SOP Instance UIDs with other doses, how many of those
    there are, and how many non-dose objects (``rejected``) were set aside.  No path (exports are named after
    patients) and no UID: the time, the sender, the kind of object and the (PHI-free) reason."""
    statuses = ", ".join("?" * len(SET_ASIDE_SHOWN))
    rows = db.execute(
        f"SELECT id, received_at, origin, calling_ae, sop_class_uid, status, reason FROM receipts "
        f"WHERE status IN ({statuses}) AND received_at >= ? ORDER BY received_at DESC, id DESC LIMIT ?",
        [*SET_ASIDE_SHOWN, since, limit]).fetchall()
    (total,) = db.execute(f"SELECT COUNT(*) FROM receipts WHERE status IN ({statuses}) AND received_at >= ?",
                          [*SET_ASIDE_SHOWN, since]).fetchone()
    # a router forwarding whole studies leaves tens of thousands of rejected receipts: count from the first
    # one of the window (an indexed range) rather than read each one's time
    (rejected,) = db.execute("SELECT COUNT(*) FROM receipts WHERE status = 'rejected' AND id >= ? AND received_at >= ?",
                             [_first_receipt_since(db, since), since]).fetchone()
    items = [{"id": rid, "received_at": at, "sender": ae or ("import" if origin == "import" else None),
              "status": status, "what": sop_class_name(sop_class), "reason": reason}
             for rid, at, origin, ae, sop_class, status, reason in rows]
    return {"since": since, "items": items, "total": total, "rejected": rejected}


def _first_receipt_since(db: sqlite_utils.Database, since: str) -> int:
    """The id of the first receipt received at or after ``since``.  Receipts are numbered as the worker takes
    objects, in the order they arrived: a binary search on the id (each step one primary-key look-up)."""
    # (each on its own: SQLite reads MIN and MAX from the index only when a query asks for one of them)
    lo, hi = db.execute("SELECT (SELECT MIN(id) FROM receipts), (SELECT MAX(id) FROM receipts)").fetchone()
    if lo is None:
        return 0
    hi += 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = db.execute("SELECT id, received_at FROM receipts WHERE id >= ? ORDER BY id LIMIT 1", [mid]).fetchone()
        if row[1] >= since:
            hi = mid
        else:
            lo = row[0] + 1
    return lo


def sop_class_name(uid: Optional[str]) -> str:
    """What an object was, by its SOP class: "X-Ray Radiation Dose SR", "CT Image"; the UID if no name is known."""
    if not uid:
        return "unreadable object"
    name = SR_CLASSES.get(uid) or UID(uid).name
    return name.removesuffix(" Storage") if name != uid else f"object of class {uid}"
