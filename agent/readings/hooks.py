"""The ledger's hooks connected to the dose checks (:mod:`agent.checks`).

``checks_hooks(rules, station)`` returns ``(on_cumulative, on_staff_total)`` for
:class:`agent.sources.serial.SerialSource`.  ``rules`` is a callable returning the current
:class:`agent.checks.Rules` (so a SIGHUP reload of the rules is seen by the next reading).
A DAP meter's ``dap`` is the checks' ``KAP`` and its ``air_kerma`` the reference-point air kerma
``Ka_r``.  Values are handed over as decimals of the digits the store holds; a staff total is rounded
to 1 pSv first, so that float summation noise cannot put a total a hair below a level it reached.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

CHECKS_QUANTITY = {"dap": "KAP", "air_kerma": "Ka_r"}


def checks_hooks(rules: Callable[[], Any], station: str) -> tuple[Callable[..., list], Callable[..., list]]:
    from agent.checks.fluoro import evaluate_procedure
    from agent.checks.staff import evaluate_staff

    def on_cumulative(tx, procedure_id: str, quantity: str, value: float, unit: str) -> list:
        return evaluate_procedure(tx, rules(), station, procedure_id, CHECKS_QUANTITY[quantity],
                                  Decimal(repr(value)), unit)

    def on_staff_total(tx, wearer_id: str, body_part: str, quarter: str, total_mSv: float) -> list:
        return evaluate_staff(tx, rules(), wearer_id, body_part, quarter, Decimal(repr(round(total_mSv, 9))),
                              station=station)

    return on_cumulative, on_staff_total
