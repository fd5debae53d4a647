"""What systemd hears from `alara-edge run` under Type=notify: while slow start-up work (a migration) goes
on, extensions of the start timeout and what it is doing; READY once the SCP listens, a watchdog ping while
healthy, STOPPING on SIGTERM. A real notification socket, no systemd needed."""
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sdnotify

from agent.startup import EXTEND_BY_S, EXTEND_EVERY_S, Startup
from agent.store import Store
from tests.conftest import AgentProcess, wait_for


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, str(path)
    sock.close()


def heard(sock, seconds: float) -> list[str]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    return out


def test_ready_when_listening_then_watchdog_then_stopping(tmp_path, notify_socket):
    sock, path = notify_socket
    agent = AgentProcess(tmp_path / "agent", env={"NOTIFY_SOCKET": path}).start()
    try:
        first = heard(sock, 1.0)
        assert first[:1] == ["READY=1"], first
        with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2):
            pass  # READY came after the SCP was listening
        assert "WATCHDOG=1" in heard(sock, 7.0)  # pinged every 5 s while healthy (WatchdogSec=30)
    finally:
        assert agent.stop() == 0
    assert "STOPPING=1" in heard(sock, 1.0)


def test_nothing_slow_to_do_tells_systemd_nothing_before_ready(tmp_path, notify_socket):
    sock, path = notify_socket
    for start in ("a new store", "the same store again"):  # migrations, then the store's check
        (tmp_path / "agent" / "agent.log").unlink(missing_ok=True)  # (start() waits for this start's line)
        agent = AgentProcess(tmp_path / "agent", env={"NOTIFY_SOCKET": path}).start()
        assert agent.stop() == 0
        told = heard(sock, 0.5)
        assert told == ["READY=1", "STOPPING=1"], (start, told)


def older_store(path: Path, studies: int) -> None:
    """A store as a version before migration 13 left it, with ``studies`` CT studies of one event each and their
    dose-check samples."""
    Store.open(path).close()
    now = "2024-01-01T00:00:00Z"
    record = json.dumps({"event_type": "Helical", "phantom": "Body 32cm"})
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO receipts (id, received_at, origin, path, sha256, size_bytes, status) "
                         "VALUES (?, ?, 'import', 'x', ?, 1, 'stored')",
                         ((i, now, f"{i:064x}") for i in range(studies)))
        conn.executemany("INSERT INTO reports (sop_instance_uid, receipt_id, received_at, station, sop_class_uid, "
                         "study_instance_uid, kind, source, study_datetime, event_count, record) "
                         "VALUES (?, ?, ?, 'ct1', '1.2', ?, 'ct', 'rdsr', ?, 1, '{}')",
                         ((f"1.9.{i}", i, now, f"1.8.{i}", now) for i in range(studies)))
        conn.executemany("INSERT INTO events (irradiation_event_uid, sop_instance_uid, study_instance_uid, "
                         "first_seen_at, record) VALUES (?, ?, ?, ?, ?)",
                         ((f"1.7.{i}", f"1.9.{i}", f"1.8.{i}", now, record) for i in range(studies)))
        samples = [("per_event", f"1.7.{i}") for i in range(studies)]
        samples += [("per_examination", f"1.8.{i}") for i in range(studies)]
        conn.executemany("INSERT INTO check_samples (station, quantity, scope, subject, exam, value, recorded_at) "
                         f"VALUES ('ct1', 'ctdivol', ?, ?, 'head', '10', '{now}')", samples)
        conn.executescript("""  -- undo migrations 16, 15, 14 and 13 (12 left the phantoms NULL)
            DROP INDEX check_samples_window;
            ALTER TABLE check_samples DROP COLUMN performed_at;
            CREATE INDEX check_samples_window ON check_samples(station, exam, quantity, scope);
            DELETE FROM schema_migrations WHERE version IN (13, 14, 15, 16);""")
    conn.close()


def test_a_long_migration_extends_the_start_timeout_and_says_what_it_does(tmp_path, notify_socket):
    """The agent runs migration 13 as it was released first (tests.quadratic_backfill): over 7,000 studies it
    takes seconds, as a store of years of studies on a slow SD card may take with today's. Today's takes 0.03 s
    over as many here: a store large enough for it to take seconds (a million studies, over 400 MB) is too large
    for a test, and a machine twice as fast would still be done within EXTEND_EVERY_S."""
    sock, path = notify_socket
    agent = AgentProcess(tmp_path / "agent", env={"NOTIFY_SOCKET": path}, module="tests.quadratic_backfill")
    older_store(agent.db_path, studies=7000)
    told: list[str] = []
    done = threading.Event()

    def listen() -> None:  # as the agent sends: the socket's queue is short (10), a full one would hold it up
        while not done.is_set():
            told.extend(heard(sock, 0.2))

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        agent.start(timeout=120)
        wait_for(lambda: "READY=1" in told, timeout=5, what="READY=1")
    finally:
        assert agent.stop() == 0
        done.set()
        listener.join()
    ready = told.index("READY=1")
    before = [dict(line.split("=", 1) for line in message.splitlines()) for message in told[:ready]]
    assert before, told  # (nothing else precedes READY)
    assert all(m["EXTEND_TIMEOUT_USEC"] == str(int(EXTEND_BY_S * 1e6)) and "STATUS" in m for m in before), told
    statuses = {m["STATUS"] for m in before}  # (on a slow machine a later migration may take long enough too)
    assert "upgrading the store: migration 13 check_samples_phantom_backfill (1 of 4 to apply)" in statuses, told
    assert all(s.startswith("upgrading the store: migration 1") for s in statuses), told
    assert told[ready + 1] == "STATUS=", told  # systemctl status shows no finished step
    assert not any("EXTEND_TIMEOUT_USEC" in m for m in told[ready:]), told
    events = agent.log_events()
    (started,) = [e for e in events if e["event"] == "migration_started" and e["version"] == 13]
    (applied,) = [e for e in events if e["event"] == "migration_applied" and e["version"] == 13]
    assert (started["n"], started["of"]) == (1, 4) and applied["duration_s"] > EXTEND_EVERY_S, applied
    slow = [e["step"] for e in events if e["event"] == "startup_in_progress"]  # the journal says it, once per step
    assert len(slow) == len(set(slow)) and any("migration 13" in step for step in slow), slow


def test_start_up_work_without_progress_is_no_longer_extended(tmp_path, notify_socket, monkeypatch):
    """A step that stops moving (a disk that no longer answers) gets no more extensions: systemd's start timeout
    then stops it, as it would without them."""
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    conn = sqlite3.connect(":memory:")
    with Startup(sdnotify.SystemdNotifier().notify, every_s=0.2) as startup, startup.watching(conn):
        startup.step("a long statement")
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # SQLite at work: progress
            conn.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
                         "SELECT count(*) FROM c").fetchone()
        working = heard(sock, 0.01)
        time.sleep(1.0)  # stuck: nothing executes, nothing is read or written
        stuck = heard(sock, 0.01)
    assert len(working) >= 4 and all(m.startswith("EXTEND_TIMEOUT_USEC=") for m in working), working
    assert len(stuck) <= 1, stuck  # (one look may still see the end of the work)
