"""A store and a ledger, fed with hand-made readings (the drivers and ports are tested elsewhere)."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from agent.readings.ledger import DeviceContext, Ledger
from drivers.base import Reading

BERLIN = ZoneInfo("Europe/Berlin")


def reading(quantity, value, t, kind="cumulative", unit=None, **extra) -> Reading:
    units = {"dap": "Gy.m2", "air_kerma": "Gy", "dose": "Sv", "dose_rate": "Sv/h", "counts": "count",
             "count_rate": "count/min"}
    return Reading(device="dev", quantity=quantity, value=value, unit=unit or units[quantity], kind=kind, time=t,
                   **extra)


def ctx(role="dap_meter", **extra) -> DeviceContext:
    base = dict(station="room-3", device="dev", driver="diamentor", port="/dev/serial/by-id/x", role=role,
                subject={"staff": "B-17", "room": "room-3"}.get(role), tz=BERLIN)
    base.update(extra)
    return DeviceContext(**base)


@pytest.fixture
def hooks():
    calls = {"cumulative": [], "staff": []}

    def on_cumulative(tx, procedure_id, quantity, value, unit):
        calls["cumulative"].append((procedure_id, quantity, value, unit))
        return [f"alert@{value}"] if value >= 0.03 else []

    def on_staff_total(tx, wearer_id, body_part, quarter, total_mSv):
        calls["staff"].append((wearer_id, body_part, quarter, total_mSv))
        return []

    return Ledger(on_cumulative, on_staff_total), calls


def plain(uid: str) -> str:
    """A procedure id without its random part: ``room-3:dev:1.0f3a9c2e`` is ``room-3:dev:1``."""
    return uid.rsplit(".", 1)[0]


def record(store, ledger, context, readings):
    with store.transaction() as tx:
        return ledger.record(tx, context, readings)
