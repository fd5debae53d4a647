"""Recording a batch of driver readings: samples, procedures, staff quarters, aggregates, hooks.

Everything here runs inside the caller's store transaction, so a batch is stored completely or not at
all, and the device's counter references move in the same commit as the dose they credited.

Hooks (given by the daemon; both optional, both return a list of alerts which the source publishes
after the commit):

* ``on_cumulative(tx, procedure_id, quantity, value, unit)`` — a DAP meter's procedure total grew;
  ``quantity`` is ``dap`` (``Gy.m2``) or ``air_kerma`` (``Gy``), ``value`` the procedure's cumulative
  total so far (the fluoroscopy thresholds are evaluated on it);
* ``on_staff_total(tx, wearer_id, body_part, quarter, total_mSv)`` — a wearer's quarterly dose grew.

A hook that raises is rolled back to a savepoint and logged; the readings are stored anyway.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Callable, Optional

import sqlite_utils
import structlog

from agent.store import outbox
from drivers.base import Reading

from .counters import Credit, credit_cumulative, integrate

log = structlog.get_logger("agent.readings")

CumulativeHook = Callable[[sqlite_utils.Database, str, str, float, str], list]
StaffHook = Callable[[sqlite_utils.Database, str, str, str, float], list]
PROCEDURE_COLUMNS = {"dap": ("dap_Gym2", "dap_base"), "air_kerma": ("air_kerma_Gy", "air_kerma_base")}
# what a DAP meter cannot have measured in a second, generously above any fluoroscopy or acquisition run
# (canonical units: 200 Gy·cm² and 1 Gy of air kerma per second): a larger rise waits for the next reading
MAX_RATE = {"dap": 0.02, "air_kerma": 1.0}
# a dose rate no survey meter or personal dosimeter in a radiology department reads (Sv/h; a Geiger tube
# saturates far below): a larger value is a damaged line, and integrating it for one second would add
# tens of mSv to a wearer's quarter
MAX_DOSE_RATE = 10.0


@dataclass(frozen=True)
class DeviceContext:
    """What the ledger needs to know of one configured device."""

    station: str
    device: str
    driver: str
    port: str
    role: str  # dap_meter | staff | room
    subject: Optional[str] = None  # wearer id (staff) or location id (room)
    body_part: str = "whole_body"
    max_gap_s: float = 10.0
    tz: Optional[tzinfo] = None  # local time of the quarters; None: the system's


@dataclass
class Recorded:
    """What a batch changed: alerts to publish, the gauge payload for the bus, outbox rows queued."""

    alerts: list[Any] = field(default_factory=list)
    gauge: dict[str, Any] = field(default_factory=dict)
    enqueued: int = 0


def quarter_of(t: float, tz: Optional[tzinfo] = None) -> str:
    """Calendar quarter of UNIX time ``t`` in local time ``tz`` (system local if None), e.g. ``2026Q4``."""
    local = datetime.fromtimestamp(t, tz) if tz else datetime.fromtimestamp(t).astimezone()
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def utc_iso(t: float) -> str:
    ms = round(t * 1000)  # round once, then split: x.9996 s is x+1.000, not x.000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def minute_of(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t))


def procedure_uid(ctx: DeviceContext, pid: int) -> str:
    """``station:device:id.random``: the row id alone comes again in a store restored from a backup or
    a replacement box's new store, and the central site would drop that procedure's reading and alerts
    (their event ids derive from it) as duplicates of the earlier one's."""
    return f"{ctx.station}:{ctx.device}:{pid}.{secrets.token_hex(4)}"


class Ledger:
    def __init__(self, on_cumulative: Optional[CumulativeHook] = None, on_staff_total: Optional[StaffHook] = None):
        self.on_cumulative = on_cumulative
        self.on_staff_total = on_staff_total

    # -- the batch ---------------------------------------------------------------------------------
    def record(self, tx: sqlite_utils.Database, ctx: DeviceContext, readings: list[Reading]) -> Recorded:
        out = Recorded()
        state, procedure = self._device(tx, ctx)
        samples = []
        staff_touched: set[str] = set()
        for r in readings:
            credited: Optional[float] = None
            if r.kind == "cumulative":
                last = state["cum"].get(r.quantity)
                credit, reference = credit_cumulative(last[0] if last else None, last[1] if last else None, r)
                credit, reference = self._confirmed(ctx, state, r, credit, reference)
                state["cum"][r.quantity] = [reference, r.time]
                credited = credit.amount
                if ctx.role == "dap_meter" and r.quantity in PROCEDURE_COLUMNS:
                    procedure = self._procedure_step(tx, ctx, procedure, r, credit.event, credited, out)
                elif ctx.role in ("staff", "room") and r.quantity == "dose" and credited > 0:
                    staff_touched.add(self._add_staff(tx, ctx, r.time, credited, derived=False))
            elif r.quantity == "dose_rate" and ctx.role in ("staff", "room") and "dose" not in state["cum"]:
                last = state["rate"].get(r.quantity)
                credited = integrate(last[0] if last else None, last[1] if last else None, r.time,
                                     ctx.max_gap_s, 1 / 3600)
                if credited > 0:  # delivered at the rate held since the last reading: that moment's quarter
                    staff_touched.add(self._add_staff(tx, ctx, last[1], credited, derived=True))
            damaged = r.kind == "rate" and not self._hold_rate(ctx, state, r)
            samples.append((ctx.device, r.time, r.quantity, r.kind, r.value, r.unit, r.native,
                            "implausible" if damaged else r.status, credited, procedure["id"] if procedure else None,
                            r.raw))
            if not damaged:  # kept in the samples for inspection, not in the minute summaries sent on
                self._aggregate(tx, ctx, r, credited or 0.0)
        tx.conn.executemany(
            "INSERT INTO serial_samples (device, t, quantity, kind, value, unit, native, status, credited,"
            " procedure_id, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", samples)
        for quarter in sorted(staff_touched):
            self._staff_hook(tx, ctx, quarter, out)
        tx.execute("UPDATE serial_devices SET state = ?, procedure_id = ?, updated_at = ? WHERE device = ?",
                   [json.dumps(state), procedure["id"] if procedure else None, utc_iso(time.time()), ctx.device])
        out.gauge = self._gauge(ctx, state, procedure, readings)
        return out

    def new_procedure(self, tx: sqlite_utils.Database, ctx: DeviceContext, now: float,
                      reason: str = "new_patient") -> Optional[str]:
        """Close the device's open procedure and start one whose totals count from the meter's present value."""
        state, procedure = self._device(tx, ctx)
        out = Recorded()
        if procedure:
            out.enqueued += self._close(tx, ctx, procedure, now, reason)
        base = {q: state["cum"][q][0] if q in state["cum"] else 0.0 for q in PROCEDURE_COLUMNS}
        new = self._open(tx, ctx, now, reason, base)
        tx.execute("UPDATE serial_devices SET procedure_id = ? WHERE device = ?", [new["id"], ctx.device])
        return new["uid"]

    @staticmethod
    def _confirmed(ctx: DeviceContext, state: dict, r: Reading, credit: Credit, reference: float) -> tuple[Credit, float]:
        """A counter reset, or a DAP meter's jump beyond what it could have measured, counts only when the
        next reading confirms it.

        A telegram without a checksum (the DIAMENTOR's) that lost or flipped a digit looks like a
        reset, or like a jump: the DAP dropped, or rose by hundreds of Gy·cm² in a second, and the next
        reading is back where it was.  Taken at once, a drop split the procedure and counted its DAP
        twice; a jump raised an SRDL alert, then the true values looked like a reset.  So the first
        such reading is held (nothing credited, the reference kept); if the next one agrees (resets
        too, or stays up), it is real and counted; if not, the held one was a glitch and is logged.
        A real reset or jump is thereby seen one reading later.  A smaller flipped digit that did pass
        (an overshoot) is found when the next readings fall back between the value before it and it:
        they credit nothing until the meter passes the overshoot, so the total ends right."""
        held = state.setdefault("held", {})
        before = state.setdefault("before", {})  # the reference before the last increase
        suspect = held.pop(r.quantity, None)
        # the previous reading fell back below an overshoot: the meter's true value is still under it
        below_overshoot = state.setdefault("jitter", {}).pop(r.quantity, False)
        last = state["cum"][r.quantity][0] if r.quantity in state["cum"] else None
        jump = suspect is not None and len(suspect) > 2
        if jump and r.value >= suspect[0]:  # the jump stays: real
            before[r.quantity] = last
            return credit, reference
        if suspect is not None:
            if jump or credit.event != "reset":
                log.warning("serial_glitch", device=ctx.device, quantity=r.quantity, value=suspect[0],
                            hint="one reading looked like a counter reset or a jump and was not confirmed: ignored")
            else:
                return credit, reference  # the reset is confirmed
        if credit.event == "reset" and ctx.role == "dap_meter" and last is not None and \
                before.get(r.quantity) is not None and before[r.quantity] <= r.value < last:
            log.warning("serial_glitch", device=ctx.device, quantity=r.quantity, value=last,
                        hint="the last increase overshot: nothing is credited until the meter passes it")
            state["jitter"][r.quantity] = True
            return Credit(0.0, "jitter"), last
        if credit.event == "reset":
            held[r.quantity] = [r.value, r.time]
            return Credit(0.0, "held"), last
        if credit.event == "increase" and ctx.role == "dap_meter" and last is not None:
            since = state["cum"][r.quantity][1]
            bound = r.max_rate or MAX_RATE.get(r.quantity)
            if bound is not None and credit.amount > bound * max(1.0, r.time - since):
                held[r.quantity] = [r.value, r.time, "jump"]
                return Credit(0.0, "held"), last
            if not (below_overshoot and before.get(r.quantity) is not None):
                # a rise straight after readings that fell back below an overshoot may be a second flipped
                # digit: the true values still lie above the value before the first one, not above this one
                before[r.quantity] = last
        return credit, reference

    @staticmethod
    def _hold_rate(ctx: DeviceContext, state: dict, r: Reading) -> bool:
        """Hold the rate integrated until the next reading: this one, or, for a dose rate beyond
        :data:`MAX_DOSE_RATE`, the last plausible one (the line was damaged; the device did not stop).
        Returns whether the reading is plausible."""
        if r.quantity == "dose_rate" and r.value > MAX_DOSE_RATE:
            log.warning("serial_glitch", device=ctx.device, quantity=r.quantity, value=r.value,
                        hint=f"a dose rate above {MAX_DOSE_RATE:g} Sv/h is a damaged reading: not integrated")
            last = state["rate"].get(r.quantity)
            if last is not None:
                state["rate"][r.quantity] = [last[0], r.time]
            return False
        state["rate"][r.quantity] = [r.value, r.time]
        return True

    # -- procedures ----------------------------------------------------------------------------------
    def _procedure_step(self, tx, ctx: DeviceContext, procedure: Optional[dict], r: Reading, event: str,
                        credited: float, out: Recorded) -> dict:
        """Add the reading's credit to the open procedure (opening one at the first reading or a reset).

        The total is the sum of what each reading credited (:func:`credit_cumulative`: an increase, a
        wrap-around's forward distance, nothing for a lifetime counter's first value or for jitter),
        rounded to 1e-15 of the canonical unit so that 300 Gy·cm² reached in steps is 0.03 Gy·m², not
        0.029999999999999995 (a threshold reached exactly fires)."""
        fresh_reset = event == "reset" and not (procedure and procedure["start_t"] == r.time)
        if procedure is None or fresh_reset:
            if procedure is not None:
                out.enqueued += self._close(tx, ctx, procedure, r.time, "meter_reset")
            base = {q: 0.0 for q in PROCEDURE_COLUMNS}  # the meter's value at the start (for the record)
            base[r.quantity] = r.value - credited
            procedure = self._open(tx, ctx, r.time, "meter_reset" if event == "reset" else "first_seen", base)
        total_col, _base_col = PROCEDURE_COLUMNS[r.quantity]
        total = round(procedure[total_col] + max(0.0, credited), 15)
        grew = total > procedure[total_col]
        procedure[total_col] = total
        procedure["samples"] += 1
        if grew:
            procedure["last_dose_t"] = r.time
            procedure["first_dose_t"] = procedure["first_dose_t"] or r.time
        tx.execute(f"UPDATE serial_procedures SET {total_col} = ?, samples = ?, first_dose_t = ?, last_dose_t = ?"
                   " WHERE id = ?", [total, procedure["samples"], procedure["first_dose_t"], procedure["last_dose_t"],
                                     procedure["id"]])
        if grew and self.on_cumulative:
            out.alerts.extend(_guarded(tx, "on_cumulative", self.on_cumulative, tx, procedure["uid"], r.quantity,
                                       total, r.unit))
        return procedure

    def _open(self, tx, ctx: DeviceContext, t: float, reason: str, base: dict[str, float]) -> dict:
        cur = tx.execute(
            "INSERT INTO serial_procedures (station, device, start_t, start_reason, dap_base, air_kerma_base)"
            " VALUES (?, ?, ?, ?, ?, ?)", [ctx.station, ctx.device, t, reason, base["dap"], base["air_kerma"]])
        pid = cur.lastrowid
        uid = procedure_uid(ctx, pid)
        tx.execute("UPDATE serial_procedures SET uid = ? WHERE id = ?", [uid, pid])
        log.info("procedure_started", device=ctx.device, procedure_id=uid, reason=reason)
        return _row(tx, "SELECT * FROM serial_procedures WHERE id = ?", [pid])

    def _close(self, tx, ctx: DeviceContext, procedure: dict, t: float, reason: str) -> int:
        tx.execute("UPDATE serial_procedures SET end_t = ?, end_reason = ? WHERE id = ? AND end_t IS NULL",
                   [t, reason, procedure["id"]])
        body = procedure_body(_row(tx, "SELECT * FROM serial_procedures WHERE id = ?", [procedure["id"]]))
        log.info("procedure_ended", device=ctx.device, procedure_id=procedure["uid"], reason=reason,
                 dap_Gym2=body["dap_Gym2"], air_kerma_Gy=body["air_kerma_Gy"])
        seq = outbox.enqueue(tx, "reading", outbox.event_id("reading", "procedure", procedure["uid"]), body)
        return 1 if seq else 0

    # -- staff and room dose ----------------------------------------------------------------------------
    def _add_staff(self, tx, ctx: DeviceContext, t: float, dose_Sv: float, derived: bool) -> str:
        quarter = quarter_of(t, ctx.tz)
        subject_kind = "wearer" if ctx.role == "staff" else "location"
        tx.execute(
            "INSERT INTO staff_dose (subject, subject_kind, body_part, quarter, dose_Sv, derived_Sv, samples,"
            " first_t, last_t, devices) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
            " ON CONFLICT (subject, subject_kind, body_part, quarter) DO UPDATE SET"
            " dose_Sv = round(dose_Sv + excluded.dose_Sv, 15), derived_Sv = round(derived_Sv + excluded.derived_Sv, 15),"
            " samples = samples + 1, last_t = excluded.last_t,"
            " devices = CASE WHEN instr(',' || devices || ',', ',' || excluded.devices || ',') > 0 THEN devices"
            "   ELSE devices || ',' || excluded.devices END",
            [ctx.subject or ctx.device, subject_kind, ctx.body_part, quarter, dose_Sv,
             dose_Sv if derived else 0.0, t, t, ctx.device])
        return quarter

    def _staff_hook(self, tx, ctx: DeviceContext, quarter: str, out: Recorded) -> None:
        if ctx.role != "staff" or not self.on_staff_total:
            return
        (total_Sv,) = tx.execute(
            "SELECT dose_Sv FROM staff_dose WHERE subject = ? AND subject_kind = 'wearer' AND body_part = ?"
            " AND quarter = ?", [ctx.subject, ctx.body_part, quarter]).fetchone()
        out.alerts.extend(_guarded(tx, "on_staff_total", self.on_staff_total, tx, ctx.subject, ctx.body_part,
                                   quarter, total_Sv * 1000.0))

    # -- aggregates and housekeeping -----------------------------------------------------------------------
    def _aggregate(self, tx, ctx: DeviceContext, r: Reading, credited: float) -> None:
        tx.execute(
            "INSERT INTO serial_minutes (device, quantity, kind, unit, minute, n, min, max, sum, last, credited)"
            " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
            " ON CONFLICT (device, quantity, kind, minute) DO UPDATE SET n = n + 1,"
            " min = min(min, excluded.min), max = max(max, excluded.max), sum = sum + excluded.sum,"
            " last = excluded.last, credited = credited + excluded.credited",
            [ctx.device, r.quantity, r.kind, r.unit, minute_of(r.time), r.value, r.value, r.value, r.value, credited])

    def flush_minutes(self, tx: sqlite_utils.Database, station: str, now: float, grace_s: float = 5.0) -> int:
        """Queue every finished minute's aggregate for the central site (each once); returns how many."""
        cutoff = minute_of(now - 60 - grace_s)
        rows = tx.execute(
            "SELECT device, quantity, kind, unit, minute, n, min, max, sum, last, credited FROM serial_minutes"
            " WHERE enqueued = 0 AND minute <= ? ORDER BY minute", [cutoff]).fetchall()
        for device, quantity, kind, unit, minute, n, lo, hi, total, last, credited in rows:
            body = {"type": "minute", "station": station, "device": device, "quantity": quantity, "kind": kind,
                    "unit": unit, "minute": minute, "n": n, "min": lo, "max": hi, "mean": total / n, "last": last,
                    "credited": credited}
            outbox.enqueue(tx, "reading", outbox.event_id("reading", "minute", station, device, quantity, kind,
                                                          minute), body)
            tx.execute("UPDATE serial_minutes SET enqueued = 1 WHERE device = ? AND quantity = ? AND kind = ?"
                       " AND minute = ?", [device, quantity, kind, minute])
        return len(rows)

    @staticmethod
    def prune(tx: sqlite_utils.Database, device: str, older_than_t: float) -> int:
        """Delete the device's raw samples older than ``older_than_t``; aggregates and totals stay."""
        return tx.execute("DELETE FROM serial_samples WHERE device = ? AND t < ?", [device, older_than_t]).rowcount

    # -- state ---------------------------------------------------------------------------------------------
    def _device(self, tx, ctx: DeviceContext) -> tuple[dict, Optional[dict]]:
        row = tx.execute("SELECT state, procedure_id FROM serial_devices WHERE device = ?", [ctx.device]).fetchone()
        if row is None:
            row = ("{}", None)
            if ctx.role in ("staff", "room"):  # the dosimeter on this port given to another wearer or location
                before = tx.execute(  # (its id defaults to the wearer): its counter goes on, its dose is not new
                    "SELECT device, state FROM serial_devices WHERE port = ? AND driver = ? AND role = ? "
                    "ORDER BY updated_at DESC LIMIT 1", [ctx.port, ctx.driver, ctx.role]).fetchone()
                if before is not None:
                    carried = {"cum": json.loads(before[1] or "{}").get("cum", {})}
                    row = (json.dumps(carried), None)
                    log.warning("serial_device_continues", device=ctx.device, previous=before[0], port=ctx.port,
                                hint="the same dosimeter under a new id: its dose so far stays with the previous one")
            tx.execute("INSERT INTO serial_devices (device, driver, port, role, state, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                       [ctx.device, ctx.driver, ctx.port, ctx.role, row[0], utc_iso(time.time())])
        state = json.loads(row[0])
        state.setdefault("cum", {})
        state.setdefault("rate", {})
        procedure = _row(tx, "SELECT * FROM serial_procedures WHERE id = ? AND end_t IS NULL", [row[1]]) \
            if row[1] is not None else None
        return state, procedure

    def _gauge(self, ctx: DeviceContext, state: dict, procedure: Optional[dict], readings: list[Reading]) -> dict:
        latest = {f"{r.quantity}_{r.kind}": {"value": r.value, "unit": r.unit, "status": r.status,
                                             "at": utc_iso(r.time)} for r in readings}
        gauge: dict[str, Any] = {"station": ctx.station, "device": ctx.device, "role": ctx.role, "latest": latest}
        if procedure:
            gauge.update(procedure_id=procedure["uid"], dap_Gym2=procedure["dap_Gym2"],
                         air_kerma_Gy=procedure["air_kerma_Gy"], started_at=utc_iso(procedure["start_t"]))
        if ctx.subject:
            gauge["subject"] = ctx.subject
        return gauge


def procedure_body(row: dict) -> dict[str, Any]:
    """The PHI-free outbox body of a procedure's totals."""
    return {"type": "procedure", "procedure_id": row["uid"], "station": row["station"], "device": row["device"],
            "started_at": utc_iso(row["start_t"]), "start_reason": row["start_reason"],
            "ended_at": utc_iso(row["end_t"]) if row["end_t"] else None, "end_reason": row["end_reason"],
            "dap_Gym2": row["dap_Gym2"], "air_kerma_Gy": row["air_kerma_Gy"], "samples": row["samples"]}


def _row(tx, sql: str, params: list) -> Optional[dict]:
    cur = tx.execute(sql, params)
    row = cur.fetchone()
    return dict(zip([c[0] for c in cur.description], row)) if row else None


def _guarded(tx: sqlite_utils.Database, name: str, hook: Callable[..., Any], *args: Any) -> list:
    """Run a checks hook inside a savepoint: if it raises, its writes are undone and the batch goes on."""
    tx.execute("SAVEPOINT serial_hook")
    try:
        result = hook(*args) or []
    except Exception:
        tx.execute("ROLLBACK TO serial_hook")
        tx.execute("RELEASE serial_hook")
        log.exception("serial_hook_failed", hook=name)
        return []
    tx.execute("RELEASE serial_hook")
    return list(result)
