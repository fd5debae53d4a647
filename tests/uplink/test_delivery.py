"""End to end through a real Mosquitto: outages, crashes of the broker, refusals, pacing, MQTT 3.1.1."""
from __future__ import annotations

import json
import time

import pytest

from agent.bus import Bus
from agent.central.receiver import Receiver
from agent.store import outbox
from agent.uplink import Uplink
from tests.uplink.broker import Mosquitto
from tests.uplink.conftest import central_event_ids, central_view, enqueue, make_config, wait_for
from tests.uplink.tap import Tap
from tests.uplink.wire import WireCount


def _received(cfg) -> int:
    return sum(central_view(cfg).get("received", {}).get(k, 0) for k in ("report", "alert", "ack", "reading"))


def _assert_exactly_once(cfg, ids: list[str], max_duplicates: int) -> dict:
    view = central_view(cfg)
    assert sorted(central_event_ids(cfg)) == sorted(ids)
    assert view["seq_gaps"] == 0 and view["missing_seq"] == []
    assert view["max_seq"] == len(ids)
    assert view["duplicates_dropped"] <= max_duplicates
    return view


def test_backlog_built_while_broker_down_arrives_exactly_once(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port)
    broker.stop()
    bus = Bus()
    uplink = running(Uplink(cfg, store, bus))
    ids = enqueue(store, 200, bus=bus)
    wait_for(lambda: uplink.health()["last_error"], what="a connection error")
    h = uplink.health()
    assert not h["connected"] and h["pending"] == 200 and h["oldest_pending_created"]

    broker.start()
    running(Receiver(cfg))
    wait_for(lambda: _received(cfg) >= 200, timeout=30, what="200 messages at the central receiver")
    view = _assert_exactly_once(cfg, ids, max_duplicates=0)
    assert [s["store"] for s in view["stores"]] == [outbox.store_id(store.db)]  # every message names its store
    assert view["received"]["reading"] == 200
    wait_for(lambda: uplink.health()["pending"] == 0, what="an empty backlog")
    assert uplink.health()["delivered"] == 200 and uplink.health()["connected"]


def test_broker_killed_mid_drain_loses_nothing(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port, rate_per_s=100)
    central(cfg)
    time.sleep(1.2)  # the broker's autosave (every second) now holds the receiver's session
    bus = Bus()
    ids = enqueue(store, 200)
    running(Uplink(cfg, store, bus))
    wait_for(lambda: _received(cfg) >= 60, what="the drain to be under way")
    broker.kill()
    time.sleep(0.3)
    broker.start()
    wait_for(lambda: _received(cfg) >= 200, timeout=40, what="all 200 after the broker crash")
    _assert_exactly_once(cfg, ids, max_duplicates=cfg.mqtt.window)


def test_broker_frozen_mid_drain_loses_nothing(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port, rate_per_s=100)
    central(cfg)
    bus = Bus()
    ids = enqueue(store, 200)
    uplink = running(Uplink(cfg, store, bus))
    wait_for(lambda: _received(cfg) >= 60, what="the drain to be under way")
    broker.freeze()
    wait_for(lambda: not uplink.health()["connected"], timeout=15, what="the uplink to notice the frozen broker")
    broker.thaw()
    wait_for(lambda: _received(cfg) >= 200, timeout=40, what="all 200 after the broker froze")
    _assert_exactly_once(cfg, ids, max_duplicates=cfg.mqtt.window)


def test_refused_topic_goes_to_dead_letter_with_alarm_and_is_not_retried(tmp_path, store, running, central):
    acl = tmp_path / "acl"
    acl.write_text("topic read alara/#\ntopic write alara/st-test/ct-01/reading\ntopic write alara/st-test/ct-01/status\n")
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}").start()
    try:
        cfg = make_config(tmp_path, broker.port)
        central(cfg)
        bus = Bus()
        alarms = []
        bus.subscribe(lambda _t, a: alarms.append(a), {"alarm"})
        readings = enqueue(store, 3, kind="reading")
        enqueue(store, 2, kind="alert")
        uplink = running(Uplink(cfg, store, bus))
        wait_for(lambda: uplink.health()["dead"] == 2 and uplink.health()["pending"] == 0, what="two dead letters")
        time.sleep(1.0)  # several loop turns and a reconnect window: nothing is retried
        rows = store.db.execute("SELECT kind, state, attempts, last_error FROM outbox ORDER BY seq").fetchall()
        assert [r[:3] for r in rows] == [("reading", "delivered", 1)] * 3 + [("alert", "dead", 1)] * 2
        assert all(r[3] == "0x87 Not authorized" for r in rows[3:])
        assert [a["seq"] for a in alarms if a["kind"] == "outbox_dead_letter"] == [4, 5]
        assert any(a["kind"] == "outbox_dead_letter" for a in uplink.health()["alarms"])
        assert sorted(central_event_ids(cfg)) == sorted(readings)

        def status_says():  # the retained status at the central site, long before status_interval_s
            body = (central_view(cfg).get("last_status") or {}).get("body") or {}
            return body.get("dead"), [a.get("count") for a in body.get("alarms", []) if a["kind"] == "outbox_dead_letter"]
        wait_for(lambda: status_says() == (2, [2]), timeout=10, what="a status with both dead letters")
        enqueue(store, 1, kind="alert", tag="later")  # one more, after that status: its count goes out again
        bus.publish("outbox", None)
        wait_for(lambda: status_says() == (3, [3]), timeout=10, what="a status with the third dead letter")
    finally:
        broker.stop()


def test_under_mqtt_311_a_refused_topic_is_acknowledged_and_shows_as_missing_at_the_central_site(tmp_path, store,
                                                                                                  running, central):
    """MQTT 3.1.1 has no PUBACK failure code: Mosquitto acknowledges a PUBLISH its ACL denies and drops it, so the
    agent counts it delivered (docs/uplink.md says so) and only the central site's seq gaps show the loss."""
    acl = tmp_path / "acl"
    acl.write_text("topic read alara/#\n" + "".join(f"topic write alara/st-test/ct-01/{kind}\n"
                                                    for kind in ("reading", "status")))
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}").start()
    try:
        cfg = make_config(tmp_path, broker.port, protocol="3.1.1")
        central(cfg)
        enqueue(store, 2, kind="reading")
        enqueue(store, 2, kind="alert")
        enqueue(store, 1, kind="reading", tag="later")
        uplink = running(Uplink(cfg, store, Bus()))
        wait_for(lambda: uplink.health()["delivered"] == 5, what="all five counted delivered")
        assert uplink.health()["dead"] == 0
        wait_for(lambda: central_view(cfg).get("missing_seq") == [[3, 4]], what="the two alerts missing centrally")
    finally:
        broker.stop()


def test_no_subscriber_holds_messages_until_the_central_session_exists(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port)
    bus = Bus()
    ids = enqueue(store, 20)
    uplink = running(Uplink(cfg, store, bus))
    wait_for(lambda: any(a["kind"] == "no_subscriber" for a in uplink.health()["alarms"]), what="the alarm")
    # held, not delivered: a message still out when the alarm went up is back in the backlog once its PUBACK
    # (0x10, no subscriber) is recorded
    wait_for(lambda: uplink.health()["pending"] == 20, timeout=5, what="all 20 held")
    assert uplink.health()["delivered"] == 0
    running(Receiver(cfg))
    wait_for(lambda: _received(cfg) >= 20, timeout=20, what="the held messages")
    _assert_exactly_once(cfg, ids, max_duplicates=0)
    wait_for(lambda: not uplink.health()["alarms"], what="the alarm to clear")


def test_the_pause_for_a_missing_subscriber_grows_once_per_attempt(broker, store, tmp_path, running):
    """No subscriber at all: each attempt's rows come back 0x10 over several commits (a window of 50 is more
    than Mosquitto's Receive Maximum of 20); the pause must double once per attempt, not once per commit, or
    held data waits up to reconnect_max_s long after the central receiver is back."""
    cfg = make_config(tmp_path, broker.port, reconnect_min_s=0.1, reconnect_max_s=60)
    enqueue(store, 300)
    running(Uplink(cfg, store, Bus()))

    def attempts() -> int:  # the oldest row goes out first in every attempt
        return store.db.execute("SELECT attempts FROM outbox WHERE seq = 1").fetchone()[0]
    # pauses of at most 0.1, 0.2, 0.4 and 0.8 s: the fifth attempt within 1.5 s and a few turns
    wait_for(lambda: attempts() >= 5, timeout=4, what="five attempts")


def test_drain_is_paced(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port, rate_per_s=40)
    central(cfg)
    enqueue(store, 80)
    started = time.monotonic()
    running(Uplink(cfg, store, Bus()))
    wait_for(lambda: _received(cfg) >= 80, timeout=20, what="80 messages")
    elapsed = time.monotonic() - started
    # 80 messages at 40/s after a first burst of at most one second's worth (40): at least 1 s
    assert 0.95 * (80 - 40) / 40 <= elapsed < 10, elapsed


def test_a_pace_slower_than_the_window_is_kept_from_the_start(broker, store, tmp_path, running, central):
    """rate_per_s = 10 with the window of 50: the first burst is one second's worth, not the window (which
    would send five seconds' worth at once to a receiver sized for the pace)."""
    cfg = make_config(tmp_path, broker.port, rate_per_s=10, window=50)
    central(cfg)
    enqueue(store, 30)
    started = time.monotonic()
    running(Uplink(cfg, store, Bus()))
    wait_for(lambda: _received(cfg) >= 30, timeout=20, what="30 messages")
    assert 0.95 * (30 - 10) / 10 <= time.monotonic() - started < 10


def test_a_window_above_the_brokers_receive_maximum_never_exceeds_it(tmp_path, store, running, central):
    # window 20 (the most a failure may re-send) against a broker that takes 4 unacknowledged QoS 1
    # messages at a time (MQTT 5 Receive Maximum, which a client must not exceed; Mosquitto 2.0 does
    # not enforce it, so the test counts): sending on while PUBACKs are committed leaves at most 4 out
    broker = Mosquitto(tmp_path / "small-broker", persistence=False, extra="max_inflight_messages 4").start()
    try:
        cfg = make_config(tmp_path, broker.port, window=20)
        central(cfg)
        bus = Bus()
        ids = enqueue(store, 300)
        uplink = Uplink(cfg, store, bus)
        out = []
        sent = uplink.ledger.sent

        def counted(*args):
            sent(*args)
            out.append(uplink.ledger.unacked())
        uplink.ledger.sent = counted
        running(uplink)
        wait_for(lambda: _received(cfg) >= 300, timeout=30, what="300 messages")
        _assert_exactly_once(cfg, ids, max_duplicates=0)
        assert len(out) == 300 and max(out) == 4
    finally:
        broker.stop()


@pytest.mark.parametrize("receive_maximum, window", [(4, 20), (20, 50)])  # (20, 50): Mosquitto's and ours by default
def test_status_messages_share_the_brokers_receive_maximum_with_the_backlog(tmp_path, store, central,
                                                                            receive_maximum, window):
    """The retained status (sent every status_interval_s, here often, and when the agent stops) is a QoS 1
    message too: with the backlog's messages it must stay within the Receive Maximum the broker announced,
    counted on the wire, and the agent stopped mid-drain still leaves "offline, agent stopped" behind."""
    broker = Mosquitto(tmp_path / "broker", persistence=False,
                       extra=f"max_inflight_messages {receive_maximum}").start()
    wire = WireCount(broker.port)
    tap = Tap(broker.port, topic="alara/+/+/status")
    try:
        wait_for(tap.subscribed.is_set, what="the status tap")
        central(make_config(tmp_path, broker.port))
        cfg = make_config(tmp_path, wire.port, window=window, status_interval_s=0.01)
        enqueue(store, 3000)
        uplink = Uplink(cfg, store, Bus())
        uplink.start()
        wait_for(lambda: uplink.health()["delivered"] >= 1000, timeout=30, what="the drain under way")
        uplink.stop()
        assert uplink.health()["delivered"] < 3000  # stopped with messages out
        assert len(tap.messages) > 10  # status messages went out in the middle of the drain
        wait_for(lambda: tap.messages[-1].json["body"].get("reason") == "agent stopped", what="the offline status")
        assert wire.max_out <= receive_maximum, wire.max_out
    finally:
        tap.close()
        wire.close()
        broker.stop()


def test_mqtt_311_end_to_end(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port, protocol="3.1.1")
    central(cfg)
    bus = Bus()
    ids = enqueue(store, 30, kind="alert")
    running(Uplink(cfg, store, bus))
    wait_for(lambda: _received(cfg) >= 30, what="30 alerts")
    _assert_exactly_once(cfg, ids, max_duplicates=0)


def test_new_rows_are_sent_at_once_after_commit(broker, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port)
    central(cfg)
    bus = Bus()
    uplink = running(Uplink(cfg, store, bus))
    wait_for(lambda: uplink.health()["connected"], what="the uplink")
    time.sleep(1.5)  # idle: the loop sleeps up to a second unless woken
    started = time.monotonic()
    (eid,) = enqueue(store, 1, kind="alert", bus=bus)
    wait_for(lambda: eid in central_event_ids(cfg), interval=0.01, what="the alert")
    assert time.monotonic() - started < 0.5
    with store.transaction() as tx:
        assert outbox.counts(tx) == {"delivered": 1}


def test_a_message_the_broker_drops_the_connection_for_is_dead_lettered_not_retried_for_ever(tmp_path, store, running,
                                                                                             central):
    """MQTT 3.1.1 has no maximum packet size in CONNACK: a broker that closes the connection at a too
    large message made the uplink reconnect and send it again, ten times a second, and nothing after
    it went out. Now, after three such losses in a row, that row is a dead letter with an alarm."""
    broker = Mosquitto(tmp_path / "broker", extra="max_packet_size 2000").start()
    try:
        cfg = make_config(tmp_path, broker.port, protocol="3.1.1")
        central(cfg)
        bus = Bus()
        alarms = []
        bus.subscribe(lambda _t, a: alarms.append(a), {"alarm"})
        before = enqueue(store, 1)
        with store.transaction() as tx:
            outbox.enqueue(tx, "reading", outbox.event_id("reading", "large"), {"blob": "x" * 5000})
        after = enqueue(store, 4, start=10)
        uplink = running(Uplink(cfg, store, bus))
        wait_for(lambda: uplink.health()["dead"] == 1 and uplink.health()["delivered"] == 5, timeout=30,
                 what="the large row dead-lettered and the others delivered")
        (state, attempts, error) = store.db.execute("SELECT state, attempts, last_error FROM outbox WHERE seq = 2").fetchone()
        assert state == "dead" and attempts >= 3 and "closed the connection" in error
        assert [a["seq"] for a in alarms if a["kind"] == "outbox_dead_letter"] == [2]
        wait_for(lambda: sorted(central_event_ids(cfg)) == sorted(before + after), what="the others at the central site")
    finally:
        broker.stop()


def test_messages_out_when_the_drain_pauses_for_a_missing_subscriber_are_not_sent_twice(broker, store, tmp_path,
                                                                                         running):
    """Alerts have no subscriber (0x10: held, the drain pauses), readings have one: the readings that were still
    out when a pause began must not go out again when it ends; nothing crashed, so nothing may arrive twice."""
    import paho.mqtt.client as mqtt

    got: list[str] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="readings-only", protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, m: got.append(json.loads(m.payload)["event_id"])
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("alara/st-test/ct-01/reading", qos=1)
    sub.loop_start()
    try:
        time.sleep(0.3)
        readings = []
        for n in range(30):  # an alert every eleventh message: the drain pauses again and again
            readings += enqueue(store, 10, kind="reading", tag="r", start=10 * n)
            enqueue(store, 1, kind="alert", tag="a", start=n)
        cfg = make_config(tmp_path, broker.port, window=50, reconnect_min_s=0.001, reconnect_max_s=0.01)  # short pauses
        uplink = running(Uplink(cfg, store, Bus()))
        wait_for(lambda: uplink.health()["delivered"] == len(readings), timeout=30, what="every reading delivered")
        time.sleep(0.5)  # pauses end, held alerts go out again: no reading with them
        assert sorted(got) == sorted(readings)  # each once
    finally:
        sub.loop_stop()
