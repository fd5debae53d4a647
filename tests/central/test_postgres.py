"""The central receiver on the real local PostgreSQL server (a database created and dropped per test)."""
from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest

from agent.bus import Bus
from agent.central.store import CentralStore
from agent.uplink import Uplink
from tests.central.conftest import message
from tests.conftest import run_agent
from tests.uplink.conftest import enqueue, make_config, wait_for

SERVER = os.environ.get("ALARA_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


@pytest.fixture
def pg_url():
    name = f"alara_central_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(SERVER, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {SERVER} (set ALARA_TEST_POSTGRES): {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    yield SERVER.rsplit("/", 1)[0] + "/" + name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


def test_postgres_mode_end_to_end(pg_url, broker, station, store, tmp_path, running, central):
    cfg = make_config(tmp_path, broker.port)
    cfg.central.database = pg_url
    rx = central(cfg)
    ids = enqueue(store, 50, kind="reading")
    uplink = running(Uplink(cfg, store, Bus()))
    wait_for(lambda: rx.counts["stored"] >= 50, what="50 readings in PostgreSQL")
    station.publish(message(1, kind="alert", station="mr-07"))  # a second station
    db = CentralStore.open(pg_url)
    try:
        (envelope,) = db.conn.execute("SELECT envelope FROM central_events WHERE event_id = %s", (ids[6],)).fetchone()
        assert envelope["seq"] == 7 and envelope["body"]["dose_mGy"] == 0.601  # numbers exact through JSONB
        station.publish(json.dumps(envelope).encode())  # the same event again: dropped
        wait_for(lambda: rx.counts["duplicates"] == 1 and rx.counts["stored"] == 51, what="the duplicate")
        stations = {s["station"]: s for s in db.stations()}
    finally:
        db.close()
    assert uplink.health()["delivered"] == 50
    ct = stations["ct-01"]
    assert ct["received"]["reading"] == 50 and ct["duplicates_dropped"] == 1 and ct["seq_gaps"] == 0
    assert ct["last_status"]["body"]["state"] == "online"
    assert stations["mr-07"]["received"]["alert"] == 1

    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndatabase = "{pg_url}"\n')
    out = run_agent("central-report", "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    assert [s["station"] for s in json.loads(out.stdout)["stations"]] == ["ct-01", "mr-07"]


def test_lost_database_connection_loses_nothing(pg_url, broker, station, tmp_path, central):
    cfg = make_config(tmp_path, broker.port)
    cfg.central.database = pg_url
    rx = central(cfg)
    for seq in range(1, 11):
        station.publish(message(seq))
    wait_for(lambda: rx.counts["stored"] == 10, what="10 messages")
    with psycopg.connect(SERVER, autocommit=True) as admin:  # the server drops the receiver's session
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                      (pg_url.rsplit("/", 1)[1],))
    for seq in range(11, 31):
        station.publish(message(seq))
    wait_for(lambda: rx.counts["stored"] == 30, timeout=30, what="the messages that arrived while the database was lost")
    db = CentralStore.open(pg_url)
    try:
        (s,) = db.stations()
    finally:
        db.close()
    assert s["received"]["alert"] == 30 and s["seq_gaps"] == 0


def test_a_message_postgresql_cannot_hold_is_kept_aside_and_the_others_are_stored(pg_url, broker, station, tmp_path,
                                                                                  central):
    """jsonb has no room for a NUL character: that one message went round the batch, the rollback and
    the broker's re-delivery for ever, and nothing after it was stored."""
    from agent.store import outbox
    from agent.uplink.payloads import envelope

    cfg = make_config(tmp_path, broker.port)
    cfg.central.database = pg_url
    rx = central(cfg)
    poison = envelope(kind="alert", event_id=outbox.event_id("alert", "nul"), seq=2, site="st-test", station="ct-01",
                      created="2025-03-01T10:20:00Z", body_json=json.dumps({"text": "A\u0000B"}))
    for payload in (message(1), poison, *(message(seq) for seq in range(3, 8))):
        station.publish(payload)
    wait_for(lambda: rx.counts["stored"] == 6 and rx.counts["rejected"] == 1, timeout=30,
             what="6 messages stored and the one PostgreSQL refuses kept aside")
    with psycopg.connect(pg_url) as db:
        (reason,) = db.execute("SELECT reason FROM central_rejects").fetchone()
    assert "refused" in reason


def test_a_reused_seq_is_logged_once_in_postgres_mode(pg_url, broker, station, tmp_path, central):
    from structlog.testing import capture_logs

    cfg = make_config(tmp_path, broker.port)
    cfg.central.database = pg_url
    with capture_logs() as logs:
        rx = central(cfg)
        for seq in (1, 2, 3):
            station.publish(message(seq, store=None))  # an agent from before stores were named, then upgraded
        for seq in (3, 4, 5, 6, 4):  # 3 sent again naming its store; 4 a plain duplicate
            station.publish(message(seq))
        for seq in (2, 5, 6):  # restored from an older backup
            station.publish(message(seq, tag="restored"))
        wait_for(lambda: rx.counts["stored"] + rx.counts["duplicates"] >= 11, what="11 messages")
    reused = [(e["station"], e["store"], e["seq"], e["times"]) for e in logs if e.get("event") == "seq_reused"]
    assert reused == [("ct-01", "5e" * 16, 2, 1)]
    db = CentralStore.open(pg_url)
    try:
        (s,) = db.stations()
    finally:
        db.close()
    assert (s["seq_reused"], s["duplicates_dropped"], s["seq_gaps"]) == (3, 2, 0)


def test_bad_input_with_a_nul_byte_is_kept_aside_in_postgres_mode(pg_url, broker, station, tmp_path, central):
    """PostgreSQL's text has no room for a NUL byte: such unreadable input was acknowledged and lost,
    with only a log line, instead of being kept in central_rejects like any other."""
    cfg = make_config(tmp_path, broker.port)
    cfg.central.database = pg_url
    rx = central(cfg)
    station.publish(b"\x00\x01 not json", topic="alara/st-test/ct-01/alert")
    station.publish(message(1))
    wait_for(lambda: rx.counts["stored"] == 1 and rx.counts["rejected"] == 1, what="1 stored, 1 rejected")
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT topic, reason, payload FROM central_rejects").fetchall()
    assert [(topic, reason.split(":")[0]) for topic, reason, _ in rows] == [("alara/st-test/ct-01/alert",
                                                                             "not UTF-8 JSON")]
    assert rows[0][2].endswith("\x01 not json")
