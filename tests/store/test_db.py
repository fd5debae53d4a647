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
