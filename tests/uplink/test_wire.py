"""What a subscriber at the broker sees: topics, MQTT 5 properties, retained status, and the schemas."""
from __future__ import annotations

import json
from decimal import Decimal

from agent.bus import Bus
from agent.checks.alerts import Alert
from agent.config import Config
from agent.store import outbox
from agent.uplink import ReportOutboxStage, Uplink
from tests.uplink.conftest import make_config, wait_for
from tests.uplink.reports import BIRTH, NAME, ct_report, ingest
from tests.uplink.schemas import errors
from tests.uplink.tap import Tap


def _queue_mixed(store, cfg: Config) -> None:
    stage = ReportOutboxStage(cfg)
    for n in range(2):
        with store.transaction() as tx:
            stage(tx, ingest(tx, ct_report(n=n, study=f"1.2.826.0.1.3680043.10.1.{n}")))
    alert = Alert(id=outbox.event_id("alert", "aapm-ct-head", "1.2.3.4"), kind="ct_notification_value",
                  severity="warning", station="ct-01", rule="aapm-ct-head", source="AAPM", raised_at="2025-03-01T10:21:00Z",
                  message="CTDIvol 81.3 mGy above the notification value 80 mGy", quantity="ctdivol",
                  value=Decimal("81.3"), threshold=Decimal("80"), unit="mGy", irradiation_event_uid="1.2.3.4")
    bodies = {"alert": alert.to_dict(),
              "ack": {"alert_id": alert.id, "station": "ct-01", "by": "rso", "reason": "repeat scan", "note": None,
                      "at": "2025-03-01T10:25:00Z"},
              "reading": {"type": "minute", "station": "ct-01", "device": "dap-meter", "quantity": "dap",
                          "kind": "cumulative", "unit": "Gy.m2", "minute": "2025-03-01T10:21:00Z", "n": 3,
                          "min": 0.000121, "max": 0.000123, "mean": 0.000122, "last": 0.000123, "credited": 0.0}}
    for kind, body in bodies.items():
        with store.transaction() as tx:
            outbox.enqueue(tx, kind, alert.id if kind == "alert" else outbox.event_id(kind, 1), body)


def test_every_published_message_is_valid_and_carries_its_properties(broker, store, tmp_path, running):
    cfg = make_config(tmp_path, broker.port, require_subscriber=False)
    tap = Tap(broker.port)
    try:
        _queue_mixed(store, cfg)
        running(Uplink(cfg, store, Bus()))
        wait_for(lambda: len([m for m in tap.messages if not m.topic.endswith("/status")]) >= 5, what="5 messages")
        wait_for(lambda: tap.of_kind("status"), what="the status")
        for m in tap.messages:
            doc = m.json
            assert errors(doc) == [], (m.topic, errors(doc))
            assert m.topic == f"alara/st-test/ct-01/{doc['kind']}"
            assert (m.content_type, m.payload_format, m.expiry) == ("application/json", 1, None)
            assert m.user == {"event_id": doc["event_id"], "schema": f"alara-edge/{doc['kind']}/1", "seq": str(doc["seq"])}
            assert NAME.split("^")[0] not in m.payload.decode() and BIRTH not in m.payload.decode()
        events = [m.json for m in tap.messages if not m.topic.endswith("/status")]
        assert [d["seq"] for d in events] == [1, 2, 3, 4, 5]  # first attempts arrive in order
        assert [d["kind"] for d in events] == ["report", "report", "alert", "ack", "reading"]
        assert events[4]["body"]["last"] == 0.000123 and events[2]["body"]["value"] == 81.3
        status = tap.of_kind("status")[-1].json
        assert status["body"]["state"] == "online" and status["seq"] >= 5
    finally:
        tap.close()


def test_status_is_retained_online_then_offline_on_stop(broker, store, tmp_path):
    cfg = make_config(tmp_path, broker.port, require_subscriber=False)
    uplink = Uplink(cfg, store, Bus())
    uplink.start()
    wait_for(lambda: uplink.health()["connected"], what="the uplink")
    late = Tap(broker.port, topic="alara/+/+/status")  # subscribes after the status was published
    try:
        wait_for(lambda: late.messages, what="the retained status")
        first = late.messages[0]
        assert first.retain and first.json["body"]["state"] == "online"
        assert first.json["body"]["pending"] == 0 and errors(first.json) == []
        uplink.stop()
        wait_for(lambda: late.messages[-1].json["body"]["state"] == "offline", what="offline")
        assert late.messages[-1].json["body"]["reason"] == "agent stopped"
    finally:
        late.close()
    again = Tap(broker.port, topic="alara/+/+/status")
    try:
        wait_for(lambda: again.messages, what="the retained offline status")
        assert again.messages[0].retain and again.messages[0].json["body"]["state"] == "offline"
    finally:
        again.close()


def test_alarm_on_the_bus_shows_in_health_and_status(broker, store, tmp_path, running):
    cfg = make_config(tmp_path, broker.port, require_subscriber=False)
    bus = Bus()
    uplink = running(Uplink(cfg, store, bus))
    wait_for(lambda: uplink.health()["connected"], what="the uplink")
    tap = Tap(broker.port, topic="alara/+/+/status")
    try:
        bus.publish("alarm", {"kind": "store_quota_reached"})
        wait_for(lambda: tap.messages and any(a["kind"] == "store_quota_reached"
                                              for a in tap.messages[-1].json["body"]["alarms"]),
                 what="the alarm in the status")
        assert [a["kind"] for a in uplink.health()["alarms"]] == ["store_quota_reached"]
        assert errors(tap.messages[-1].json) == []
        bus.publish("alarm", {"kind": "store_quota_reached", "cleared": True})  # the condition is over
        wait_for(lambda: tap.messages[-1].json["body"]["alarms"] == [], what="the status without the alarm")
        assert uplink.health()["alarms"] == []
    finally:
        tap.close()
    assert json.loads(json.dumps(uplink.health()))  # health is plain JSON for /healthz
