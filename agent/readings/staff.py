"""``alara-edge staff [--quarter 2026Q4] [--json]``: staff and room dose for one calendar quarter.

Quarters are calendar quarters in the station's local time (``[station] timezone``, default the
system's).  Doses come from dosimeters configured with a ``wearer`` (staff) or a ``location`` (room);
``derived_mSv`` is the part the agent integrated from a dose rate (devices without a cumulative dose).
Each wearer's row lists the investigational levels that apply to the body part (from the dose
checks' rules: the configured ones, else the NRC-model defaults marked "to be verified by the site")
and whether the quarter's dose has reached them.
"""
from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from datetime import datetime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

from agent.checks import load_rules
from agent.checks.units import exact
from agent.commands.common import add_config_argument, load_config, read_store

from .ledger import quarter_of

HELP = "staff and room dose per wearer/location, body part and calendar quarter (local time)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--quarter", metavar="YYYYQn", type=_quarter_arg, help="default: the current quarter")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _quarter_arg(text: str) -> str:
    if not re.fullmatch(r"\d{4}Q[1-4]", text) or not 1900 <= int(text[:4]) <= 9998:  # 0000Q1: no such year
        raise argparse.ArgumentTypeError("a quarter looks like 2026Q4")
    return text


def quarter_bounds(quarter: str, tz: Optional[ZoneInfo]) -> tuple[datetime, datetime]:
    """First instant of ``quarter`` and of the next one, in local time."""
    year, q = int(quarter[:4]), int(quarter[5])
    start = datetime(year, 3 * q - 2, 1)
    end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
    if tz:
        return start.replace(tzinfo=tz), end.replace(tzinfo=tz)
    return start.astimezone(), end.astimezone()


def staff_quarter(db, quarter: str) -> list[dict[str, Any]]:
    """Rows of ``staff_dose`` for ``quarter``, doses in mSv."""
    try:
        rows = db.execute(
            "SELECT subject, subject_kind, body_part, dose_Sv, derived_Sv, samples, first_t, last_t, devices"
            " FROM staff_dose WHERE quarter = ? ORDER BY subject_kind DESC, subject, body_part", [quarter]).fetchall()
    except sqlite3.OperationalError:  # a store that never had a serial device
        return []
    return [{"subject": s, "subject_kind": k, "body_part": b, "dose_mSv": _mSv(dose), "derived_mSv": _mSv(derived),
             "samples": n, "first_at": _iso(first), "last_at": _iso(last), "devices": [d for d in devices.split(",") if d]}
            for s, k, b, dose, derived, n, first, last, devices in rows]


def _mSv(sievert: float) -> float:
    """Sv as stored → mSv as written (0.00012 Sv is 0.12 mSv, not 0.12000000000000001)."""
    return float(exact(sievert) * 1000)


def with_levels(rows: list[dict[str, Any]], rules: Any) -> list[dict[str, Any]]:
    """Add each wearer's investigational levels (``levels``: level, mSv, reached, source) to the rows."""
    from agent.checks.tables import STAFF_KINDS
    from agent.checks.units import from_canonical

    for row in rows:
        if row["subject_kind"] != "wearer":
            continue
        found = rules.select(STAFF_KINDS, modality="occupational", quantity="dose_equivalent",
                             body_part=row["body_part"])
        row["levels"] = sorted(({"level": "IL I" if r.kind.endswith("_I") else "IL II",
                                 "mSv": float(from_canonical(r.q, r.threshold, "mSv")),
                                 "reached": row["dose_mSv"] >= float(from_canonical(r.q, r.threshold, "mSv")),
                                 "source": r.source_text} for r in found), key=lambda lv: lv["mSv"])
    return rows


def _iso(t: Optional[float]) -> Optional[str]:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t is not None else None


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    tz = ZoneInfo(cfg.station.timezone) if cfg.station.timezone else None
    quarter = args.quarter or quarter_of(time.time(), tz)
    start, end = quarter_bounds(quarter, tz)
    db = read_store(cfg.store.path)
    rows = staff_quarter(db, quarter) if db is not None else []
    rows = with_levels(rows, load_rules(cfg.checks))
    if args.json:
        print(json.dumps({"quarter": quarter, "timezone": cfg.station.timezone or "system",
                          "from": start.isoformat(), "to": end.isoformat(), "rows": rows}, indent=2))
        return 0
    print(f"{quarter}  {start:%Y-%m-%d} – {(end - timedelta(days=1)):%Y-%m-%d} ({cfg.station.timezone or 'local time'})")
    if not rows:
        print("no staff or room dose recorded")
    for r in rows:
        derived = f"  (integrated from rate: {r['derived_mSv']:.4f})" if r["derived_mSv"] else ""
        levels = "  ".join(f"{lv['level']} {lv['mSv']:g}{' REACHED' if lv['reached'] else ''}"
                           for lv in r.get("levels", []))
        print(f"{r['subject_kind']:8} {r['subject']:16} {r['body_part']:10} {r['dose_mSv']:10.4f} mSv  {levels}{derived}")
    return 0
