"""Times the agent set (UTC) are printed by the commands in the station's time zone, the same in
``alerts``, ``alerts --follow`` and ``studies`` (and as the console shows them), whatever TZ says."""
from __future__ import annotations

import io
import time

from agent.commands.common import local_time
from agent.console.follow import Printer


def test_local_time_uses_the_station_zone():
    assert local_time("2026-12-07T01:00:20.123Z", "Europe/Berlin") == "2026-12-07 02:00:20"
    assert local_time("2026-12-07T01:00:20Z", "America/New_York") == "2026-12-06 20:00:20"
    assert local_time("2026-03-29T01:30:00Z", "Europe/Berlin") == "2026-03-29 03:30:00"  # after the DST change
    assert local_time(None, "Europe/Berlin") == "-"


def test_follow_and_list_agree_on_the_station_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        out = io.StringIO()
        Printer(out, colour=False, bell=False, timezone="Europe/Berlin").alert(
            {"id": "alert-1", "severity": "warning", "raised_at": "2026-12-07T01:00:20.000Z", "message": "m"})
        assert out.getvalue().startswith("2026-12-07 02:00:20  WARNING")
        assert local_time("2026-12-07T01:00:20Z") == "2026-12-06 20:00:20"  # no station zone: the machine's
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_alerts_command_prints_station_time(tmp_path, capsys):
    import argparse

    import agent.checks.commands.alerts as mod

    class A:
        raised_at = "2026-12-07T01:00:20.000Z"; severity = "warning"; kind = "ct_notification_value"
        value = threshold = None; unit = "mGy"; ack = None; id = "alert-1"; rule = "r"; exam = None
        message = "m"; source = "s"

    cfg = type("C", (), {})()
    cfg.station = type("S", (), {"timezone": "Europe/Berlin"})()
    cfg.store = type("St", (), {"path": tmp_path / "x.sqlite"})()
    orig = (mod.load_config, mod.read_store, mod.list_alerts)
    mod.load_config, mod.read_store, mod.list_alerts = (lambda a: cfg), (lambda p: object()), (lambda *a, **k: [A()])
    try:
        mod.run(argparse.Namespace(follow=False, open=False, kind=None, limit=None, json=False))
    finally:
        mod.load_config, mod.read_store, mod.list_alerts = orig
    assert capsys.readouterr().out.startswith("2026-12-07 02:00:20  warning")
