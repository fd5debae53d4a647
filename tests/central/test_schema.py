"""The central database's versioned schema: upgrades keep what is stored, a newer schema is refused,
receivers started together (shared subscriptions) agree on it. On SQLite and the real PostgreSQL."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from agent.central.store import SCHEMA, CentralStore, CentralStoreError
from tests.central.conftest import message
from tests.central.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.conftest import run_agent


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "central.sqlite")
    return request.getfixturevalue("pg_url")


def _config(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(f'[station]\nsite = "central"\nid = "rx"\n\n[central]\ndatabase = "{database}"\n')
    return path


def test_database_of_a_newer_version_is_refused_with_a_clear_error(database, tmp_path):
    store = CentralStore.open(database)
    newer = SCHEMA[-1][0] + 1
    store.conn.execute(f"INSERT INTO central_schema (version, name, applied_at) VALUES ({store.p}, {store.p}, {store.p})",
                       (newer, "from the future", "2030-01-01T00:00:00Z"))
    store.conn.commit()
    store.close()

    result = run_agent("central-report", "-c", str(_config(tmp_path, database)), "--json")
    assert result.returncode == 1
    assert f"central schema version {newer}, newer than this alara-edge knows" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(CentralStoreError, match="newer than this alara-edge"):
        CentralStore.open(database)


def _database_from_before_versioning(path: Path) -> None:
    old = sqlite3.connect(path)  # the tables as the first release created them, without central_schema
    for sql in SCHEMA[0][2](False):
        old.execute(sql)
    old.execute("INSERT INTO central_stations (site, station) VALUES ('st-test', 'ct-01')")
    old.execute("INSERT INTO central_events VALUES ('alert-1', 'st-test', 'ct-01', 'alert', 1, 'alara-edge/alert', 1, "
                "'2025-03-01T10:20:00Z', '2025-03-01T10:20:01Z', '2025-03-01T10:20:02Z', ?)",
                (message(1).decode(),))
    old.commit()
    old.close()


def test_database_from_before_versioning_is_adopted_with_its_events(tmp_path):
    path = tmp_path / "central.sqlite"
    _database_from_before_versioning(path)

    store = CentralStore.open(str(path))
    try:
        assert store.schema_version() == SCHEMA[-1][0]
        (station,) = store.stations()
        assert station["received"]["alert"] == 1 and station["seq_gaps"] == 0
    finally:
        store.close()


def test_receivers_starting_together_create_the_schema_once(database):
    opened: list[CentralStore] = []
    errors: list[Exception] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(CentralStore.open(database))
        except Exception as exc:  # the assertion below shows which
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert len(opened) == 6
        rows = opened[0].conn.execute("SELECT version FROM central_schema ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [v for v, _, _ in SCHEMA]
    finally:
        for store in opened:
            store.close()


def test_report_on_a_database_not_yet_brought_up_to_date_says_so_and_changes_nothing(tmp_path):
    # e.g. alara-edge upgraded on the central server, the receiver not restarted yet
    path = tmp_path / "central.sqlite"
    _database_from_before_versioning(path)
    before = path.read_bytes()
    result = run_agent("central-report", "-c", str(_config(tmp_path, str(path))), "--json")
    assert result.returncode == 1
    assert f"central schema version 0; this alara-edge uses {SCHEMA[-1][0]}" in result.stderr
    assert "alara-edge central" in result.stderr and "Traceback" not in result.stderr
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'central_schema'").fetchone() is None
    assert path.read_bytes() == before

    store = CentralStore.open(str(path))  # the receiver brings it up to date; then the report reads it
    store.close()
    result = run_agent("central-report", "-c", str(_config(tmp_path, str(path))), "--json")
    assert result.returncode == 0, result.stderr
    assert '"alert": 1' in result.stdout


def test_report_on_a_database_that_is_not_there_says_so_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo" / "central.sqlite"
    result = run_agent("central-report", "-c", str(_config(tmp_path, str(missing))))
    assert result.returncode == 1
    assert f"no central database at {missing}" in result.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_report_needs_only_read_access_on_postgresql(pg_url, tmp_path):  # noqa: F811
    import uuid

    import psycopg

    from agent.central.receiver import parse

    store = CentralStore.open(pg_url)  # the receiver's role made the tables and holds one station
    store.record([parse("alara", "alara/st-test/ct-01/alert", message(1))])
    store.close()
    role = f"alara_report_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        reader = pg_url.replace("://", f"://{role}@", 1) if "@" not in pg_url else None
        if reader is None:
            pytest.skip("the test server's URL already names a user")
        result = run_agent("central-report", "-c", str(_config(tmp_path, reader)), "--json")
        assert result.returncode == 0, result.stderr
        assert '"alert": 1' in result.stdout
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
            admin.execute(f'DROP ROLE "{role}"')
