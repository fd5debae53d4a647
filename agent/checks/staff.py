"""Staff dosimetry: a wearer's quarterly total against Investigational Levels I and II
(``staff_investigational_level``).

Defaults are the US NRC model ALARA program's levels per calendar quarter (post-1994 variant):
whole body 1.25 / 3.75 mSv, lens of the eye 3.75 / 11.25 mSv, extremity and skin 12.5 / 37.5 mSv.
They are recalled, not read in a primary source, and marked "to be verified by the site";
sites configure their own (``[[checks.level]]`` rows of kind ``investigational_level_I``/``_II``).
Level I asks the RSO to review; level II to investigate.  Each level fires once per wearer,
body part and quarter.

Entry point (the serial-dosimeter reader calls it inside the transaction storing the reading)::

    alerts = evaluate_staff(tx, stage.rules, wearer_id="W-017", body_part="whole_body",
                            quarter="2025-Q1", total_mSv=1.31, station="ROOM1")

``body_part`` is one of whole_body, lens, extremity, skin; ``total_mSv`` the wearer's total for
the quarter so far (personal dose equivalent, mSv).  The alerts returned are recorded and queued in the outbox
inside ``tx``; once it has committed, the caller publishes each on the bus
(``bus.publish("alert", alert)``) as the pipeline does for reports.
"""
from __future__ import annotations

from typing import Optional

import sqlite_utils

from agent.checks.alerts import Alert, record
from agent.checks.rules import Rules
from agent.checks.tables import BODY_PARTS, STAFF_KINDS
from agent.checks.units import Number, QUANTITIES, to_canonical

_LEVEL = {"investigational_level_I": "IL I", "investigational_level_II": "IL II"}
_ACTION = {"investigational_level_I": "the radiation safety officer reviews it",
           "investigational_level_II": "the radiation safety officer investigates it"}


def evaluate_staff(tx: sqlite_utils.Database, rules: Rules, wearer_id: str, body_part: str, quarter: str,
                   total_mSv: Number, *, station: Optional[str] = None) -> list[Alert]:
    """Record the investigational levels ``total_mSv`` newly reaches for this wearer and quarter; returns them."""
    if body_part not in BODY_PARTS:
        raise ValueError(f"unknown body part {body_part!r} (use one of: {', '.join(BODY_PARTS)})")
    value = to_canonical(QUANTITIES["dose_equivalent"], total_mSv, "mSv")
    out = []
    for row in rules.select(STAFF_KINDS, modality="occupational", quantity="dose_equivalent", body_part=body_part):
        if value < row.threshold:
            continue
        alert = Alert.for_row(
            "staff_investigational_level", row, station=station, subject=(wearer_id, body_part, quarter),
            observed=value, level=_LEVEL[row.kind], wearer_id=wearer_id, body_part=body_part, period=quarter,
            message=f"Wearer {wearer_id}: {body_part.replace('_', ' ')} dose {{value}} in {quarter} is at or above "
                    f"investigational level {_LEVEL[row.kind][3:]} ({{threshold}}); {_ACTION[row.kind]}.")
        if record(tx, alert):
            out.append(alert)
    return out
