"""The ledger wired to the real dose checks: KAP thresholds on a procedure, investigational levels per quarter."""
from __future__ import annotations

from agent.checks import list_alerts, load_rules
from agent.config import ChecksConfig
from agent.readings.hooks import checks_hooks
from agent.readings.ledger import Ledger

from .conftest import ctx, plain, reading, record


def ledger() -> Ledger:
    rules = load_rules(ChecksConfig())
    return Ledger(*checks_hooks(lambda: rules, "room-3"))


def test_kap_first_notification_fires_at_exactly_300_Gycm2_not_below(store):
    led = ledger()
    out = record(store, led, ctx(), [reading("dap", 0.0299999, 1.0)])
    assert out.alerts == []
    out = record(store, led, ctx(), [reading("dap", 0.03, 2.0)])  # 30000.00 cGy·cm² from the meter
    (alert,) = out.alerts
    assert (alert.kind, alert.level, plain(alert.procedure_id), float(alert.threshold)) == \
        ("fluoro_threshold", "first notification", "room-3:dev:1", 300.0)
    assert record(store, led, ctx(), [reading("dap", 0.0301, 3.0)]).alerts == []  # once per procedure
    # a meter reset (confirmed by the next reading) is a new procedure: its thresholds count again
    record(store, led, ctx(), [reading("dap", 0.001, 4.0)])
    record(store, led, ctx(), [reading("dap", 0.002, 5.0)])
    assert [plain(a.procedure_id) for a in record(store, led, ctx(), [reading("dap", 0.0305, 16.0)]).alerts] == \
        ["room-3:dev:2"]
    assert len(list_alerts(store.db)) == 2


def test_staff_investigational_level_fires_when_the_quarter_reaches_it(store):
    led = ledger()
    c = ctx(role="staff", driver="generic")
    t = 1_790_000_000.0  # 2026-09-21 (Q3)
    record(store, led, c, [reading("dose", 0.0, t)])
    alerts = []
    for i in range(1, 6):  # five steps of 0.25 mSv: 1.25 mSv, the whole-body IL I, reached exactly
        alerts += record(store, led, c, [reading("dose", 0.00025 * i, t + i)]).alerts
    (alert,) = alerts
    assert (alert.kind, alert.level, alert.wearer_id, alert.body_part, alert.period) == \
        ("staff_investigational_level", "IL I", "B-17", "whole_body", "2026Q3")
