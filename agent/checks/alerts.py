"""Alert records and their lifecycle: raised → acknowledged (who, why, when).

An alert's id is deterministic from its rule and its subject (the event, study, procedure
level or staff quarter it concerns), and unique in the ``alerts`` table: raising the same
alert again — a re-sent report, a cumulative RDSR repeating earlier events — changes nothing.
Each new alert and each acknowledgement is queued in the outbox in the same transaction.

Severity (docs/dose-checks.md):

=================================  ========================================================
info                               exam_above_drl (one examination above a DRL: review it)
warning                            median_above_drl, ct_notification_value, fluoro_threshold
                                   first and subsequent notifications, modality_dose_check
                                   notification, staff investigational level I
critical                           ct_alert_value, fluoro_threshold SRDL, modality_dose_check
                                   alert, staff investigational level II
=================================  ========================================================

A critical alert can only be acknowledged with a reason.  ``to_dict`` never holds a patient's
name, id or birth date.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any, Optional

import sqlite_utils

from agent import phi
from agent.checks.tables import LevelRow
from agent.checks.units import from_canonical, plain, short
from agent.store import outbox
from agent.store.reports import study_identity

KINDS = ("exam_above_drl", "median_above_drl", "ct_notification_value", "ct_alert_value", "fluoro_threshold",
         "modality_dose_check", "staff_investigational_level")
SEVERITIES = ("info", "warning", "critical")

# severity by row kind (fluoroscopy, staff) or alert kind
SEVERITY = {
    "exam_above_drl": "info", "median_above_drl": "warning", "ct_notification_value": "warning",
    "ct_alert_value": "critical", "notification_first": "warning", "notification_subsequent_increment": "warning",
    "SRDL": "critical", "investigational_level_I": "warning", "investigational_level_II": "critical",
}


# The console's fixed acknowledgement reasons: the agent's own words, never the patient's identity, so
# they leave the box as chosen (a patient registered as "UNKNOWN^TRAUMA PATIENT" must not turn
# "large patient" into "large [removed]" at the central site).
ACK_REASONS = ("clinically justified", "large patient", "repeat for motion", "protocol error", "other")


class UnknownAlert(LookupError):
    pass


class AlreadyAcknowledged(ValueError):
    pass


def utcnow() -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2025-01-31T09:15:02.123Z``."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass
class Alert:
    id: str
    kind: str
    severity: str
    station: Optional[str]
    rule: str
    source: str
    message: str
    raised_at: str
    quantity: Optional[str] = None
    value: Optional[Decimal] = None  # in ``unit`` (the unit the rule is written in)
    threshold: Optional[Decimal] = None
    unit: Optional[str] = None
    study_instance_uid: Optional[str] = None
    irradiation_event_uid: Optional[str] = None
    procedure_id: Optional[str] = None
    exam: Optional[str] = None
    patient_group: Optional[str] = None
    scope: Optional[str] = None
    level: Optional[str] = None  # which level of a graded rule: "first notification", "IL II" …
    wearer_id: Optional[str] = None  # staff dosimetry only
    body_part: Optional[str] = None
    period: Optional[str] = None
    acknowledged: bool = False
    ack: Optional[dict[str, Any]] = None

    @classmethod
    def for_row(cls, kind: str, row: LevelRow, *, station: Optional[str], subject: tuple[Any, ...],
                observed: Decimal, message: str, limit: Optional[Decimal] = None, **where: Any) -> "Alert":
        """An alert raised by ``row``.  ``observed`` and ``limit`` (the value crossed, when it is not
        the row's own) are in canonical units; both are reported in the row's unit.  ``message``
        may use ``{value}`` and ``{threshold}``, which are written with that unit.  Only these two are
        replaced: the message quotes a modality's free text (a protocol name such as "Head {routine}"),
        which must not be read as a format string."""
        value = plain(from_canonical(row.q, observed, row.unit))
        threshold = row.value if limit is None else plain(from_canonical(row.q, limit, row.unit))
        text = message.replace("{value}", f"{short(value)} {row.unit}") \
            .replace("{threshold}", f"{short(threshold)} {row.unit}")
        return cls(
            id=alert_id(row.id, *subject), kind=kind, severity=SEVERITY.get(row.kind) or SEVERITY[kind],
            station=station, rule=row.id, source=row.source_text, message=text, raised_at=utcnow(),
            quantity=row.quantity, value=value, threshold=threshold, unit=row.unit, scope=row.scope,
            patient_group=row.group_label(), **where,
        )

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data (console, MQTT, ``alara-edge alerts --json``)."""
        out = asdict(self)
        for key in ("value", "threshold"):
            if out[key] is not None:
                out[key] = float(out[key])
        return out


def alert_id(rule: str, *subject: Any) -> str:
    return outbox.event_id("alert", rule, *subject)


_COLUMNS = [f.name for f in fields(Alert) if f.name not in ("acknowledged", "ack")]


def record(tx: sqlite_utils.Database, alert: Alert) -> bool:
    """Store ``alert`` and queue it for the central site; False (and nothing written) if it exists."""
    row = {c: getattr(alert, c) for c in _COLUMNS}
    for key in ("value", "threshold"):
        if row[key] is not None:
            row[key] = format(row[key], "f")
    cur = tx.execute(
        f"INSERT OR IGNORE INTO alerts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    if cur.rowcount == 0:
        return False
    outbox.enqueue(tx, "alert", alert.id, alert.to_dict())
    return True


def acknowledge(tx: sqlite_utils.Database, alert_id: str, by: str, reason: Optional[str],
                note: Optional[str] = None) -> Alert:
    """Record who acknowledged ``alert_id``, why and when; queue the acknowledgement for the central site.

    Raises :class:`UnknownAlert`, :class:`AlreadyAcknowledged`, or ValueError when ``by`` is
    empty or a critical alert is acknowledged without a reason.
    """
    alert = get_alert(tx, alert_id)
    if alert is None:
        raise UnknownAlert(f"no alert {alert_id!r}")
    if alert.acknowledged:
        raise AlreadyAcknowledged(f"alert {alert_id} was acknowledged by {alert.ack['by']} at {alert.ack['at']}")
    if not (by or "").strip():
        raise ValueError("say who acknowledges the alert (by)")
    reason = (reason or "").strip() or None
    if alert.severity == "critical" and reason is None:
        raise ValueError(f"alert {alert_id} is critical: a reason is required to acknowledge it")
    at = utcnow()
    tx.execute("UPDATE alerts SET acknowledged_by = ?, ack_reason = ?, ack_note = ?, acknowledged_at = ? WHERE id = ?",
               [by.strip(), reason, note, at, alert_id])
    alert.acknowledged = True
    alert.ack = {"by": by.strip(), "reason": reason, "note": note, "at": at}
    sent = dict(alert.ack)  # the store keeps what was typed; what leaves the box loses the patient's identity
    patient = study_identity(tx, alert.study_instance_uid)
    found = phi.pattern(patient) if patient else None
    if sent["reason"] not in ACK_REASONS:
        sent["reason"] = phi.redact(sent["reason"], found)
    sent["note"] = phi.redact(sent["note"], found)
    outbox.enqueue(tx, "ack", outbox.event_id("ack", alert_id), {"alert_id": alert_id, "station": alert.station, **sent})
    return alert


def get_alert(db: sqlite_utils.Database, alert_id: str) -> Optional[Alert]:
    found = list_alerts(db, ids=[alert_id])
    return found[0] if found else None


def list_alerts(db: sqlite_utils.Database, *, acknowledged: Optional[bool] = None, kind: Optional[str] = None,
                study_instance_uid: Optional[str] = None, ids: Optional[list[str]] = None,
                limit: Optional[int] = None, severity: Optional[str] = None) -> list[Alert]:
    """Alerts, newest first, optionally only (un)acknowledged ones, one kind, one study, one severity or given ids."""
    where, args = [], []
    if acknowledged is not None:
        where.append("acknowledged_at IS NOT NULL" if acknowledged else "acknowledged_at IS NULL")
    for column, value in (("kind", kind), ("study_instance_uid", study_instance_uid), ("severity", severity)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if ids is not None:
        where.append(f"id IN ({','.join('?' * len(ids))})")
        args.extend(ids)
    sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY raised_at DESC, rowid DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [_from_row(r) for r in db.query(sql, args)]


def _from_row(r: dict[str, Any]) -> Alert:
    alert = Alert(**{c: r[c] for c in _COLUMNS})
    for key in ("value", "threshold"):
        if r[key] is not None:
            setattr(alert, key, Decimal(r[key]))
    if r["acknowledged_at"]:
        alert.acknowledged = True
        alert.ack = {"by": r["acknowledged_by"], "reason": r["ack_reason"], "note": r["ack_note"],
                     "at": r["acknowledged_at"]}
    return alert
