"""The store's durability settings, migrations, single-writer lock and corruption handling."""
import sqlite3

import pytest

from agent.store import Store, StoreBusy, StoreError, connect
from agent.store.migrations import MIGRATIONS


def test_every_connection_is_wal_with_full_sync(tmp_path):
    store = Store.open(tmp_path / "a.sqlite")
    for db in (store.db, connect(tmp_path / "a.sqlite")):
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_migrations_are_recorded_and_applied_once(tmp_path):
    path = tmp_path / "a.sqlite"
    Store.open(path).close()
    store = Store.open(path)
    versions = [r[0] for r in store.db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == sorted(v for v, _, _ in MIGRATIONS)
    assert {"receipts", "reports", "events", "outbox", "counters"} <= set(store.db.table_names())
    store.close()


def test_a_second_writer_process_is_refused(tmp_path):
    path = tmp_path / "a.sqlite"
    first = Store.open(path)
    with pytest.raises(StoreBusy):
        Store.open(path)
    first.close()
    Store.open(path).close()  # the lock goes with the writer


def test_failed_transaction_leaves_nothing(tmp_path):
    store = Store.open(tmp_path / "a.sqlite")
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx["counters"].insert({"name": "x", "value": 1})
            raise RuntimeError("stage failed")
    assert store.db.execute("SELECT COUNT(*) FROM counters WHERE name='x'").fetchone()[0] == 0
    store.close()


def test_read_only_store_raises_store_error(tmp_path):
    path = tmp_path / "a.sqlite"
    Store.open(path).close()
    store = Store.open(path)
    store.db.conn.close()
    store.db.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StoreError):
        with store.transaction() as tx:
            tx.execute("INSERT INTO counters (name, value) VALUES ('y', 1)")


def test_corrupt_database_is_moved_aside_not_deleted(tmp_path):
    path = tmp_path / "a.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    store = Store.open(path)
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert aside and aside[0].read_bytes().startswith(b"SQLite format 3")
    assert "reports" in store.db.table_names()
    store.close()


def test_a_store_keeps_its_id_and_a_new_store_gets_another(tmp_path):
    from agent.store import outbox

    first = Store.open(tmp_path / "a.sqlite")
    ident = outbox.store_id(first.db)
    first.close()
    again = Store.open(tmp_path / "a.sqlite")
    other = Store.open(tmp_path / "b.sqlite")
    try:
        assert outbox.store_id(again.db) == ident and len(ident) == 32 and int(ident, 16) >= 0
        assert outbox.store_id(other.db) != ident
    finally:
        again.close()
        other.close()


OPEN_WITHOUT_ROOM = """
import resource, signal, sys
from agent.store import Store, StoreError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no byte may be written: as on a full disk
try:
    Store.open(sys.argv[1])
except StoreError as exc:
    print("refused:", exc)
"""

KILLED_WRITER = """
import os, sys
from agent.store import Store, outbox
store = Store.open(sys.argv[1])
with store.transaction() as tx:
    outbox.enqueue(tx, "reading", outbox.event_id("reading", 1), {"n": 1})
os._exit(0)  # no checkpoint: the commit is in the WAL, which the next open must read back
"""


def test_a_store_that_cannot_be_checked_for_want_of_space_is_not_taken_for_corrupt(tmp_path):
    """On a full disk, opening a store whose WAL must be recovered fails; the store is healthy and
    must stay where it is, not be moved aside as corrupt (the agent would start empty)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "agent.sqlite"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], cwd=repo, check=True, timeout=60)
    (tmp_path / "agent.sqlite-shm").unlink(missing_ok=True)  # recovery must write it again
    out = subprocess.run([sys.executable, "-c", OPEN_WITHOUT_ROOM, str(path)], cwd=repo, capture_output=True,
                         text=True, timeout=60)
    assert "refused:" in out.stdout, out.stdout + out.stderr
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    store = Store.open(path)  # with room again: everything is there
    try:
        assert store.db.execute("SELECT COUNT(*) FROM outbox").fetchone() == (1,)
    finally:
        store.close()


def test_a_store_written_by_a_newer_version_is_refused_not_written(tmp_path):
    """A rollback to the previous version ran on the migrated store and wrote check samples without their
    phantom, which the newer version then counted for head and body medians alike."""
    path = tmp_path / "agent.sqlite"
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 'x')")
    with pytest.raises(StoreError, match=r"newer alara-edge \(migrations \[999\]"):
        Store.open(path)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM schema_migrations WHERE version = 999")
    Store.open(path).close()  # the refusal released the writer lock


def test_samples_kept_before_the_phantom_column_get_their_phantom_from_the_stored_events(tmp_path):
    import json

    from agent.store import migrations

    path = tmp_path / "agent.sqlite"
    db = sqlite_utils_db(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    for version, name, sql in sorted(MIGRATIONS):
        if version <= 12:  # the store as a version before the backfill left it
            for statement in migrations._statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, 'x')", [version, name])
    events = [("e1", "s1", "Spiral Acquisition", "IEC Head Dosimetry Phantom"),
              ("e2", "s1", "Constant Angle Acquisition", "IEC Body Dosimetry Phantom"),  # the localizer
              ("e3", "s2", "Spiral Acquisition", "IEC Body Dosimetry Phantom"),
              ("e4", "s2", "Spiral Acquisition", "IEC Head Dosimetry Phantom"),
              ("e5", "s3", "Spiral Acquisition", None)]
    db.execute("PRAGMA foreign_keys = OFF")
    for uid, study, kind, phantom in events:
        db.execute("INSERT INTO events (irradiation_event_uid, sop_instance_uid, study_instance_uid, first_seen_at, "
                   "record) VALUES (?, 'r', ?, 'x', ?)", [uid, study, json.dumps({"event_type": kind, "phantom": phantom})])
    samples = [("CTDIvol", "per_event", "e1"), ("CTDIvol", "per_event", "e3"), ("CTDIvol", "per_event", "e5"),
               ("DLP", "per_examination", "s1"), ("DLP", "per_examination", "s2"), ("DLP", "per_examination", "s3")]
    for quantity, scope, subject in samples:
        db.execute("INSERT INTO check_samples (station, quantity, scope, subject, exam, value, recorded_at) "
                   "VALUES ('ct-1', ?, ?, ?, 'CT head', '1', 'x')", [quantity, scope, subject])
    db.conn.close()
    store = Store.open(path)
    got = dict(((s, q), p) for q, s, p in store.db.execute("SELECT quantity, subject, phantom FROM check_samples"))
    store.close()
    assert got == {("e1", "CTDIvol"): "head", ("e3", "CTDIvol"): "body", ("e5", "CTDIvol"): None,
                   ("s1", "DLP"): "head",  # the localizer's phantom does not count
                   ("s2", "DLP"): None,    # head and body series: no one phantom
                   ("s3", "DLP"): None}


def sqlite_utils_db(path):
    import sqlite_utils

    return sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))


def test_the_wal_is_cut_back_after_a_checkpoint_not_kept_at_its_peak(tmp_path):
    """A long read (the console's) let the WAL grow to 48 MB over a 20,000-report soak, and it stayed there."""
    from agent.store.db import WAL_LIMIT_BYTES

    store = Store.open(tmp_path / "agent.sqlite")
    reader = store.reader()
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()  # holds a snapshot: no checkpoint passes it
        with store.transaction() as tx:
            tx.execute("CREATE TABLE filler (b BLOB)")
            for _ in range(40):
                tx.execute("INSERT INTO filler VALUES (?)", [b"x" * 500_000])
        wal = tmp_path / "agent.sqlite-wal"
        assert wal.stat().st_size > 2 * WAL_LIMIT_BYTES
        reader.execute("COMMIT")
        with store.transaction() as tx:
            tx.execute("DELETE FROM filler")
        store.db.execute("PRAGMA wal_checkpoint")  # (as the automatic checkpoint does)
        with store.transaction() as tx:
            tx.execute("INSERT INTO filler VALUES (x'00')")  # the next writer restarts the log and cuts it back
        assert wal.stat().st_size <= WAL_LIMIT_BYTES
    finally:
        reader.conn.close()
        store.close()
