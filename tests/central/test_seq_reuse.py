"""A station's store numbering two different events alike (restored from an older backup, cloned boxes):
the receiver says so in its log the first time, then once a minute with a count; duplicates are no reuse."""
from __future__ import annotations

import time

from structlog.testing import capture_logs

from agent.central.receiver import Receiver
from tests.central.conftest import STORE, message
from tests.uplink.conftest import central_view, make_config, wait_for


def _reuses(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e.get("event") == "seq_reused"]


def _handled(rx: Receiver, n: int) -> None:
    wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= n, what=f"{n} messages")


def test_a_restored_store_is_logged_once_then_counted_once_a_minute(broker, station, tmp_path, central, monkeypatch):
    monkeypatch.setattr("agent.logs.REPEAT_LOG_S", 2.0)  # "a minute", shortened
    cfg = make_config(tmp_path, broker.port)
    with capture_logs() as logs:
        rx = central(cfg)
        for seq in range(1, 11):
            station.publish(message(seq, tag="sent"))
        for seq in range(6, 11):  # restored from a backup taken at seq 5: 6-10 come again with other events
            station.publish(message(seq, tag="restored"))
        station.publish(message(7, tag="restored"))  # a plain duplicate of one of them
        _handled(rx, 16)
        (first,) = _reuses(logs)
        assert {k: first[k] for k in ("site", "station", "store", "seq", "times", "log_level")} == {
            "site": "st-test", "station": "ct-01", "store": STORE, "seq": 6, "times": 1, "log_level": "warning"}
        assert "backup" in first["hint"] and "cloned" in first["hint"]
        time.sleep(2.1)
        station.publish(message(8, tag="restored"))  # duplicates, after the minute: still no line
        station.publish(message(3, tag="sent"))
        station.publish(message(11, tag="restored"))  # past the old numbers: nothing reused
        _handled(rx, 19)
        assert len(_reuses(logs)) == 1
        time.sleep(2.1)
        station.publish(message(5, tag="restored-again"))  # restored once more, from an older backup
        _handled(rx, 20)
    assert [(e["seq"], e["times"]) for e in _reuses(logs)] == [(6, 1), (5, 5)]  # 7-10 unlogged, counted here
    assert [e for e in logs if e.get("event") == "seq_gap"] == []
    view = central_view(cfg)
    assert (view["seq_reused"], view["seq_gaps"], view["duplicates_dropped"]) == (6, 0, 3)


def test_duplicates_and_copies_from_a_new_store_are_no_reuse(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    with capture_logs() as logs:
        rx = central(cfg)
        for seq in (1, 2, 3, 2, 1):
            station.publish(message(seq))
        for seq in (1, 2):  # a reinstalled station (new store) sends known events again, then new ones
            station.publish(message(seq, store="7a" * 16))
        station.publish(message(3, tag="new", store="7a" * 16))
        _handled(rx, 8)
    assert _reuses(logs) == [] and central_view(cfg)["seq_reused"] == 0


def test_messages_without_a_store_are_checked_with_the_station_s_first_store(broker, station, tmp_path, central):
    """As central-report counts them: an old agent's messages belong to its first store, which an
    upgraded agent goes on numbering (a message in flight at the upgrade comes again naming it)."""
    cfg = make_config(tmp_path, broker.port)
    with capture_logs() as logs:
        rx = central(cfg)
        for seq in (1, 2, 3):
            station.publish(message(seq, store=None))
        station.publish(message(3))  # the same event again from the upgraded agent: not a reuse
        station.publish(message(4))
        _handled(rx, 5)
        assert _reuses(logs) == []
        station.publish(message(2, tag="cloned"))  # the first store numbers 2 again
        station.publish(message(1, tag="old-agent-restored", store=None))
        time.sleep(0.05)  # stores are told apart by when each was first seen
        station.publish(message(1, tag="reinstalled", store="7a" * 16))  # a new store: its own numbers
        _handled(rx, 8)
    assert [(e["store"], e["seq"]) for e in _reuses(logs)] == [(STORE, 2), (None, 1)]
    assert [(s["store"], s["seq_reused"]) for s in central_view(cfg)["stores"]] == [(STORE, 2), ("7a" * 16, 0)]


def test_a_shared_receiver_sees_a_reuse_of_numbers_another_receiver_stored(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    first = central(cfg)
    for seq in range(1, 6):
        station.publish(message(seq, tag="sent"))
    _handled(first, 5)
    first.stop()
    shared = cfg.model_copy(deep=True)
    shared.central.shared_group, shared.central.client_id = "central", "central-test-2"
    with capture_logs() as logs:
        rx = central(shared)
        for seq in (3, 4):
            station.publish(message(seq, tag="restored"))
        _handled(rx, 2)
    assert [(e["seq"], e["times"]) for e in _reuses(logs)] == [(3, 1)]


def test_a_message_counted_as_handled_has_had_its_reuse_logged(broker, station, tmp_path, central, monkeypatch):
    """What the receiver counts is done with, its log line included: a test or a stop that reads the
    counts finds the line there, however slow the database is to answer whether the seq was reused."""
    from agent.central.store import CentralStore

    reused = CentralStore.reused

    def slow(self, messages):
        time.sleep(0.3)
        return reused(self, messages)

    monkeypatch.setattr(CentralStore, "reused", slow)
    cfg = make_config(tmp_path, broker.port)
    with capture_logs() as logs:
        rx = central(cfg)
        station.publish(message(1, tag="sent"))
        station.publish(message(1, tag="restored"))
        _handled(rx, 2)
        assert [(e["seq"], e["times"]) for e in _reuses(logs)] == [(1, 1)]
