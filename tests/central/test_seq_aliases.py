"""Copies of known events numbered by another store or station: their seq is not shown missing."""
from __future__ import annotations

import json

from agent.central.store import CentralStore
from tests.central.conftest import message
from tests.uplink.conftest import central_view, make_config, wait_for


def test_a_new_store_re_sending_known_events_shows_no_false_gap(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    new_store = "7a" * 16
    for seq in (1, 2, 3):
        station.publish(message(seq))
    for seq in (1, 2):  # reinstalled: a modality sends the same objects again (same event ids), then a new one
        station.publish(message(seq, store=new_store))
    station.publish(message(3, tag="new", store=new_store))
    station.publish(message(2, store=new_store))  # a plain re-send of the copy: still one number
    wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= 7, what="7 messages")
    view = central_view(cfg)
    assert view["received"]["alert"] == 4 and view["duplicates_dropped"] == 3
    assert [(s["max_seq"], s["seq_gaps"], s["missing_seq"], s["seq_reused"]) for s in view["stores"]] == [
        (3, 0, [], 0), (3, 0, [], 0)]
    assert (view["seq_gaps"], view["missing_seq"], view["seq_reused"]) == (0, [], 0)


def test_one_object_sent_to_two_stations_shows_no_false_gap_at_the_second(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    station.publish(message(1, tag="same"))
    station.publish(message(1, tag="b1", station="ct-02"))
    copy = json.loads(message(1, tag="same"))  # the same event id, numbered 2 by the other station
    copy.update(station="ct-02", seq=2)
    station.publish(json.dumps(copy).encode())
    station.publish(message(3, tag="b3", station="ct-02"))
    wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= 4, what="4 messages")
    db = CentralStore.open(cfg.central.database)
    try:
        views = {s["station"]: s for s in db.stations()}
    finally:
        db.close()
    assert (views["ct-02"]["seq_gaps"], views["ct-02"]["missing_seq"], views["ct-02"]["max_seq"]) == (0, [], 3)
    assert (views["ct-01"]["seq_gaps"], views["ct-01"]["max_seq"]) == (0, 1)


def test_a_known_event_in_a_new_store_s_series_is_not_logged_as_a_gap(broker, station, tmp_path, central):
    from structlog.testing import capture_logs

    cfg = make_config(tmp_path, broker.port)
    new_store = "7a" * 16
    with capture_logs() as logs:
        rx = central(cfg)
        station.publish(message(1, tag="old"))
        station.publish(message(1, tag="new1", store=new_store))
        copy = json.loads(message(1, tag="old"))  # the old store's event, sent again as the new store's seq 2
        copy.update(seq=2, store=new_store)
        station.publish(json.dumps(copy).encode())
        station.publish(message(3, tag="new3", store=new_store))
        wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= 4, what="4 messages")
    assert [e for e in logs if e.get("event") == "seq_gap"] == []
    assert central_view(cfg)["missing_seq"] == []


def test_a_message_re_sent_across_the_upgrade_is_no_reused_seq(broker, station, tmp_path, central):
    """Sent by the old agent (no store), its PUBACK lost, sent again by the upgraded agent naming its
    store: one event, one seq, counted as a duplicate and not as a number given to two events."""
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    for seq in (1, 2, 3):
        station.publish(message(seq, store=None))
    for seq in (3, 4):
        station.publish(message(seq))
    wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= 5, what="5 messages")
    view = central_view(cfg)
    assert (view["seq_reused"], view["duplicates_dropped"], view["seq_gaps"], view["max_seq"]) == (0, 1, 0, 4)
