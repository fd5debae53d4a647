"""The central receiver: idempotent storage, duplicates counted, seq gaps found, bad input kept aside."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import structlog.testing

from agent.central.receiver import Receiver
from agent.central.store import CentralStore
from tests.central.conftest import message
from tests.central.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.conftest import agent_cmd, agent_env, run_agent
from tests.uplink.conftest import central_event_ids, central_view, make_config, wait_for


def _stored(cfg) -> int:
    return len(central_event_ids(cfg))


def test_duplicates_are_stored_once_and_counted(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    for seq in (1, 2, 2, 3, 1):
        station.publish(message(seq))
    wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= 5, what="5 messages")
    view = central_view(cfg)
    assert view["received"]["alert"] == 3 and view["duplicates_dropped"] == 2 and view["seq_gaps"] == 0


def test_seq_gaps_are_counted_with_the_missing_ranges(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    central(cfg)
    for seq in (1, 2, 5, 6, 9):
        station.publish(message(seq))
    wait_for(lambda: _stored(cfg) == 5, what="5 messages")
    view = central_view(cfg)
    assert (view["seq_gaps"], view["missing_seq"], view["max_seq"]) == (4, [[3, 4], [7, 8]], 9)
    for seq in (3, 4, 7, 8):  # late arrivals (a re-send) close the gaps
        station.publish(message(seq))
    wait_for(lambda: _stored(cfg) == 9, what="9 messages")
    assert central_view(cfg)["seq_gaps"] == 0


def test_bad_messages_are_kept_aside_and_never_block_the_rest(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    good = message(1)
    spoofed = message(2, station="mr-07")  # payload says another station than the topic
    station.publish(b"\xff\xfe not json")
    station.publish(b'{"event_id": "alert-1"}')
    station.publish(spoofed, topic="alara/st-test/ct-01/alert")
    station.publish(good, topic="alara/st-test/ct-01/bogus")
    station.publish(good)
    wait_for(lambda: _stored(cfg) == 1 and rx.counts["rejected"] == 4, what="1 stored, 4 rejected")
    store = CentralStore.open(cfg.central.database)
    try:
        reasons = [r[0] for r in store.conn.execute("SELECT reason FROM central_rejects ORDER BY id").fetchall()]
    finally:
        store.close()
    assert reasons[0].startswith("not UTF-8 JSON") and "missing" in reasons[1]
    assert reasons[2] == "site, station or kind differ from the topic" and reasons[3] == "unknown kind 'bogus'"


def test_persistent_session_keeps_messages_while_the_receiver_is_away(broker, station, tmp_path):
    cfg = make_config(tmp_path, broker.port)
    rx = Receiver(cfg).start()
    wait_for(rx.connected.is_set, what="the receiver")
    rx.stop()
    for seq in range(1, 31):
        station.publish(message(seq))
    rx = Receiver(cfg).start()
    try:
        wait_for(lambda: _stored(cfg) == 30, what="30 queued messages after the receiver came back")
    finally:
        rx.stop()


def test_receiver_killed_mid_stream_loses_nothing(broker, station, tmp_path):
    cfg = make_config(tmp_path, broker.port)
    config = tmp_path / "central.toml"
    config.write_text(f'[mqtt]\nport = {broker.port}\nkeepalive_s = 5\n\n'
                      f'[central]\ndatabase = "{cfg.central.database}"\nclient_id = "central-kill"\n')

    def start():
        log = tmp_path / f"central-{time.monotonic_ns()}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(agent_cmd("central", "-c", str(config)), env=agent_env(),
                                    stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "central_connected" in log.read_text() or proc.poll() is not None, what="central")
        assert proc.poll() is None, log.read_text()
        return proc

    proc = start()
    for seq in range(1, 201):
        station.publish(message(seq))
        if seq == 80:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    proc = start()
    try:
        wait_for(lambda: _stored(cfg) == 200, timeout=30, what="all 200 after the receiver was killed")
    finally:
        proc.terminate()
        proc.wait(10)
    assert central_view(cfg)["seq_gaps"] == 0


def test_shared_subscription_splits_the_load_and_stores_each_once(broker, station, tmp_path, running, central):
    a = make_config(tmp_path, broker.port)
    a.central.shared_group = "central"
    b = a.model_copy(deep=True)
    b.central.client_id = "central-test-2"
    ra, rb = running(Receiver(a)), running(Receiver(b))
    wait_for(lambda: ra.connected.is_set() and rb.connected.is_set(), what="both receivers")
    with structlog.testing.capture_logs() as logged:
        for seq in range(1, 61):
            station.publish(message(seq))
        wait_for(lambda: _stored(a) == 60, what="60 messages")
    assert ra.counts["stored"] > 0 and rb.counts["stored"] > 0
    assert ra.counts["stored"] + rb.counts["stored"] == 60 and central_view(a)["duplicates_dropped"] == 0
    # each receiver sees every other seq or so: that is its share, not a gap
    assert [e for e in logged if e["event"] == "seq_gap"] == [] and central_view(a)["seq_gaps"] == 0


def test_central_report_json_and_table(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    for seq in (1, 2, 4):
        station.publish(message(seq, kind="report"))
    station.publish(message(4, kind="report"))
    station.publish(message(5, kind="reading"))
    wait_for(lambda: rx.counts["stored"] == 4 and rx.counts["duplicates"] == 1, what="the messages")
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndatabase = "{cfg.central.database}"\n')
    out = run_agent("central-report", "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    (s,) = json.loads(out.stdout)["stations"]
    assert s["site"] == "st-test" and s["station"] == "ct-01"
    assert s["received"] == {"report": 3, "alert": 0, "ack": 0, "reading": 1, "status": 0}
    assert (s["duplicates_dropped"], s["seq_gaps"], s["missing_seq"]) == (1, 1, [[3, 3]])
    assert "last_status" in s
    table = run_agent("central-report", "-c", str(config))
    assert "st-test" in table.stdout and "missing seq 3" in table.stdout


def test_a_tail_the_broker_dropped_is_reported_missing(broker, station, tmp_path, central):
    """A broker may drop queued messages while the receiver is away (Mosquitto's max_queued_messages):
    the station saw them acknowledged, so only its status can tell that seq 10-50 never came."""
    from agent.uplink.status import status_message

    def status(seq: int, pending: int) -> bytes:
        return status_message(state="online", site="st-test", station="ct-01", seq=seq, health={
            "connected_since": None, "pending": pending, "inflight": 0, "dead": 0, "last_delivered_at": None,
            "oldest_pending_created": None, "alarms": []})[1]

    cfg = make_config(tmp_path, broker.port)
    central(cfg)
    for seq in range(1, 10):
        station.publish(message(seq))
    station.publish(status(50, pending=41))  # still sending: nothing can be said of 10-50 yet
    pending = lambda: ((central_view(cfg).get("last_status") or {}).get("body") or {}).get("pending")  # noqa: E731
    wait_for(lambda: _stored(cfg) == 9 and pending() == 41, what="9 messages and a status")
    assert (central_view(cfg)["seq_gaps"], central_view(cfg)["missing_seq"]) == (0, [])
    station.publish(status(50, pending=0))  # all 50 acknowledged by the broker, 9 arrived
    wait_for(lambda: pending() == 0, what="the second status")
    view = central_view(cfg)
    assert (view["seq_gaps"], view["missing_seq"]) == (41, [[10, 50]])


def test_a_station_that_starts_again_with_a_new_store_has_its_gaps_counted_on_their_own(broker, station, tmp_path,
                                                                                       central):
    """A replaced store numbers from 1 again: the new store's lost seq 3 is not hidden by the old
    store's 3, and the report says the station started again."""
    cfg = make_config(tmp_path, broker.port)
    central(cfg)
    for seq in range(1, 6):
        station.publish(message(seq, tag="old-store"))
    time.sleep(0.05)  # the stores are told apart by when each was first seen
    for seq in (1, 2, 4):  # the new store's 3 was lost
        station.publish(message(seq, tag="new-store", store="ab" * 16))
    wait_for(lambda: _stored(cfg) == 8, what="8 messages")
    view = central_view(cfg)
    assert view["received"]["alert"] == 8 and view["seq_reused"] == 0
    assert [(s["store"], s["max_seq"], s["seq_gaps"], s["missing_seq"]) for s in view["stores"]] == [
        ("5e" * 16, 5, 0, []), ("ab" * 16, 4, 1, [[3, 3]])]
    assert (view["seq_gaps"], view["missing_seq"], view["max_seq"]) == (1, [[3, 3]], 4)  # the current store
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndatabase = "{cfg.central.database}"\n')
    table = run_agent("central-report", "-c", str(config)).stdout
    assert "store 2 of 2 (id abababab…" in table and "missing seq 3" in table
    assert "started again with a new store (seq from 1) 1 time(s)" in table


def test_messages_of_an_agent_from_before_stores_were_named_continue_in_its_first_store(broker, station, tmp_path,
                                                                                        central):
    """An upgraded station goes on numbering where it was, now naming its store: no gap appears; an
    older agent whose store was replaced (both without a name) still shows the reused numbers."""
    cfg = make_config(tmp_path, broker.port)
    central(cfg)
    for seq in range(1, 6):
        station.publish(message(seq, store=None))
    for seq in range(6, 9):
        station.publish(message(seq))
    station.publish(message(1, station="ct-02", store=None, tag="a"))
    station.publish(message(1, station="ct-02", store=None, tag="b"))  # a legacy station's store replaced
    wait_for(lambda: _stored(cfg) == 10, what="10 messages")
    view = central_view(cfg)
    assert (view["seq_gaps"], view["max_seq"], view["seq_reused"]) == (0, 8, 0)
    assert [(s["store"], s["max_seq"]) for s in view["stores"]] == [("5e" * 16, 8)]
    other = central_view(cfg, station="ct-02")
    assert (other["seq_reused"], [s["store"] for s in other["stores"]]) == (1, [None])


def test_an_upgraded_station_with_nothing_new_to_send_shows_no_gap(broker, station, tmp_path, central):
    """After the upgrade its first message is its status, naming the store its earlier messages
    (sent without a name) were numbered in: nothing is missing, and it did not start again."""
    from agent.uplink.status import status_message

    cfg = make_config(tmp_path, broker.port)
    central(cfg)
    for seq in range(1, 6):
        station.publish(message(seq, store=None))
    station.publish(status_message(state="online", site="st-test", station="ct-01", seq=5, store="5e" * 16, health={
        "connected_since": None, "pending": 0, "inflight": 0, "dead": 0, "last_delivered_at": None,
        "oldest_pending_created": None, "alarms": []})[1])
    wait_for(lambda: _stored(cfg) == 5 and (central_view(cfg).get("last_status") or {}).get("seq") == 5,
             what="5 messages and the status")
    view = central_view(cfg)
    assert (view["seq_gaps"], view["missing_seq"], view["max_seq"]) == (0, [], 5)
    assert [(s["store"], s["max_seq"]) for s in view["stores"]] == [("5e" * 16, 5)]


def test_stores_first_heard_of_in_one_batch_keep_the_station_s_order(tmp_path):
    """A receiver back after an outage gets the old store's last messages and a reinstalled
    store's first ones in one batch (one receipt time): the agent's own times order them."""
    from agent.central.receiver import parse

    def sent(seq, store, created, tag):
        raw = message(seq, store=store, tag=tag).replace(b'"created":"2025-03-01T10:20:00Z"',
                                                        f'"created":"{created}"'.encode())
        return parse("alara", "alara/st-test/ct-01/alert", raw)

    db = CentralStore.open(str(tmp_path / "central.sqlite"))
    try:
        db.record([sent(1, None, "2025-03-01T08:00:00Z", "legacy"), sent(2, None, "2025-03-01T08:00:01Z", "legacy")])
        new, old = "0a" * 16, "fb" * 16  # the reinstalled store's id sorts first
        db.record([sent(1, new, "2025-03-02T09:00:00Z", "new"), sent(3, new, "2025-03-02T09:00:05Z", "new"),
                   sent(3, old, "2025-03-01T09:00:00Z", "old"), sent(4, old, "2025-03-01T09:00:01Z", "old")])
        (view,) = db.stations()
    finally:
        db.close()
    assert [(s["store"], s["max_seq"], s["missing_seq"], s["seq_reused"]) for s in view["stores"]] == [
        (old, 4, [], 0), (new, 3, [[2, 2]], 0)]  # the messages without a store are the old store's 1 and 2


def test_a_gap_across_the_upgrade_is_logged_as_it_appears(broker, station, tmp_path, central):
    from structlog.testing import capture_logs

    cfg = make_config(tmp_path, broker.port)
    with capture_logs() as logs:
        central(cfg)
        for seq in (1, 2, 3):
            station.publish(message(seq, store=None))
        for seq in (6, 7):
            station.publish(message(seq))
        wait_for(lambda: _stored(cfg) == 5, what="5 messages")
    gaps = [(e["missing_from"], e["missing_to"]) for e in logs if e.get("event") == "seq_gap"]
    assert gaps == [(4, 5)]


def test_a_store_that_is_not_an_id_is_refused(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    station.publish(message(1, store="not-hex-but-ok"))
    station.publish(message(2, store="a\u0000b"))
    station.publish(message(3))
    wait_for(lambda: _stored(cfg) == 1 and rx.counts["rejected"] == 2, what="1 stored, 2 rejected")


def test_a_seq_out_of_range_is_kept_aside_and_never_blocks_the_rest(broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    rx = central(cfg)
    station.publish(message(1))
    for seq in (-5, 0, 10**23):  # negative, zero for an event, beyond the databases' BIGINT
        doc = json.loads(message(1, tag=f"bad{seq}"))
        doc["seq"] = seq
        station.publish(json.dumps(doc).encode())
    station.publish(message(2))
    wait_for(lambda: _stored(cfg) == 2 and rx.counts["rejected"] == 3, what="2 stored, 3 rejected")
    view = central_view(cfg)
    assert (view["seq_gaps"], view["missing_seq"], view["max_seq"]) == (0, [], 2)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "central.sqlite")
    return request.getfixturevalue("pg_url")


def test_envelope_values_no_database_column_can_hold_are_kept_aside_and_never_block_the_rest(
        database, broker, station, tmp_path, central):
    """A lone surrogate in event_id, a schema version of true or beyond any integer column: the database
    (or its driver) refused the batch as if it were down, the receiver reconnected and got the same message
    again, for ever, and no station's message after it was stored."""
    cfg = make_config(tmp_path, broker.port)
    cfg.central.database = database
    rx = central(cfg)
    surrogate = message(1, tag="surrogate").replace(b'"event_id":"', b'"event_id":"\\ud800')
    versions = []
    for n, version in enumerate((True, 10**20)):
        doc = json.loads(message(1, tag=f"version{n}"))
        doc["schema"]["version"] = version
        versions.append(json.dumps(doc).encode())
    for payload in (surrogate, *versions, message(1), message(2)):
        station.publish(payload)
    wait_for(lambda: rx.counts["stored"] == 2 and rx.counts["rejected"] == 3, timeout=20,
             what="2 stored, 3 kept aside")
    view = central_view(cfg)
    assert (view["received"]["alert"], view["seq_gaps"]) == (2, 0)
