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


def sqlite_utils_db(path):
    import sqlite_utils

    return sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))


def store_before_the_backfill(path):
    """A store as a version before migration 13 left it (migrations up to 12 applied), foreign keys not checked
    (events without their reports)."""
    from agent.store import migrations

    db = sqlite_utils_db(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    for version, name, sql in sorted(MIGRATIONS):
        if version <= 12:
            for statement in migrations._statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, 'x')", [version, name])
    return db


def add_events(db, events):
    """``events``: (uid, study, event type, phantom name or None)."""
    import json

    with db.atomic():
        db.conn.executemany("INSERT INTO events (irradiation_event_uid, sop_instance_uid, study_instance_uid, "
                            "first_seen_at, record) VALUES (?, 'r', ?, 'x', ?)",
                            [(uid, study, json.dumps({"event_type": kind, "phantom": phantom}))
                             for uid, study, kind, phantom in events])


def add_samples(db, samples):
    """``samples``: (quantity, scope, subject, phantom): a phantom already set was kept by a version with
    migration 12 but not 13."""
    with db.atomic():
        db.conn.executemany("INSERT INTO check_samples (station, quantity, scope, subject, exam, value, "
                            "recorded_at, phantom) VALUES ('ct-1', ?, ?, ?, 'CT head', '1', 'x', ?)", samples)


def phantoms(db) -> dict:
    return {(s, q): p for q, s, p in db.execute("SELECT quantity, subject, phantom FROM check_samples")}


def test_samples_kept_before_the_phantom_column_get_their_phantom_from_the_stored_events(tmp_path):
    path = tmp_path / "agent.sqlite"
    db = store_before_the_backfill(path)
    add_events(db, [("e1", "s1", "Spiral Acquisition", "IEC Head Dosimetry Phantom"),
                    ("e2", "s1", "Constant Angle Acquisition", "IEC Body Dosimetry Phantom"),  # the localizer
                    ("e3", "s2", "Spiral Acquisition", "IEC Body Dosimetry Phantom"),
                    ("e4", "s2", "Spiral Acquisition", "IEC Head Dosimetry Phantom"),
                    ("e5", "s3", "Spiral Acquisition", None),
                    ("e6", "s4", "Constant Angle Acquisition", "IEC Head Dosimetry Phantom"),  # only a localizer
                    ("e7", "s5", "Sequenced Acquisition", "PMMA 16 cm"),
                    ("e8", "s5", "Spiral Acquisition", "HEAD 16"),
                    ("e9", "s6", "Spiral Acquisition", ""),
                    ("e10", "s6", "Spiral Acquisition", "IEC Head Dosimetry Phantom"),
                    ("e11", "s7", "Spiral Acquisition", "Body 32cm"),
                    ("e12", "s7", "Spiral Acquisition", "IEC Body Dosimetry Phantom"),
                    ("e13", "s7", "CONSTANT ANGLE ACQUISITION", "IEC Head Dosimetry Phantom")])
    add_samples(db, [("CTDIvol", "per_event", "e1", None), ("CTDIvol", "per_event", "e3", None),
                     ("CTDIvol", "per_event", "e5", None), ("CTDIvol", "per_event", "e6", None),
                     ("CTDIvol", "per_event", "e7", None), ("CTDIvol", "per_event", "e9", None),
                     ("CTDIvol", "per_event", "e-unknown", None), ("DLP", "per_event", "e1", "body"),
                     ("DLP", "per_examination", "s1", None), ("DLP", "per_examination", "s2", None),
                     ("DLP", "per_examination", "s3", None), ("DLP", "per_examination", "s4", None),
                     ("DLP", "per_examination", "s5", None), ("DLP", "per_examination", "s6", None),
                     ("DLP", "per_examination", "s7", None), ("DLP", "per_examination", "s-unknown", None),
                     ("CTDIvol", "per_examination", "s2", "head")])
    db.conn.close()
    store = Store.open(path)
    got = phantoms(store.db)
    store.close()
    assert got == {("e1", "CTDIvol"): "head", ("e3", "CTDIvol"): "body", ("e5", "CTDIvol"): None,
                   ("e6", "CTDIvol"): "head",  # a sample of the localizer itself has its phantom
                   ("e7", "CTDIvol"): "head",  # 16 cm is the head phantom
                   ("e9", "CTDIvol"): None, ("e-unknown", "CTDIvol"): None,
                   ("e1", "DLP"): "body",  # kept with its phantom by a version with migration 12: not changed
                   ("s1", "DLP"): "head",  # the localizer's phantom does not count
                   ("s2", "DLP"): None,    # head and body series: no one phantom
                   ("s3", "DLP"): None,
                   ("s4", "DLP"): None,    # no series but the localizer
                   ("s5", "DLP"): "head",
                   ("s6", "DLP"): None,    # a series without a phantom beside a head series
                   ("s7", "DLP"): "body",
                   ("s-unknown", "DLP"): None,
                   ("s2", "CTDIvol"): "head"}


def add_studies(db, studies: int, seed: int = 13) -> None:
    """``studies`` CT studies of one to four events (localizers among them) on head, body or no stated phantom,
    some of their samples kept with a phantom already, and a sample or two of events and studies not stored."""
    import random

    rng = random.Random(seed)
    names = [None, "", "IEC Head Dosimetry Phantom", "IEC Body Dosimetry Phantom", "PMMA 16 cm", "Body 32cm"]
    kinds = ["Spiral Acquisition", "Sequenced Acquisition", "Constant Angle Acquisition"]
    events, samples = [], []
    for i in range(studies):
        study = f"1.8.{i}"
        for j in range(rng.randint(0 if i % 50 == 0 else 1, 4)):
            uid = f"1.7.{i}.{j}"
            events.append((uid, study, rng.choice(kinds), rng.choice(names)))
            samples.append(("CTDIvol", "per_event", uid, rng.choice([None] * 5 + ["body"])))
        samples.append(("DLP", "per_examination", study, rng.choice([None] * 5 + ["head"])))
    add_events(db, events)
    add_samples(db, samples)


def test_the_backfill_gives_the_phantoms_the_released_backfill_gave(tmp_path):
    """Migration 13 was made to look its events up by index: it must leave the phantoms it left before."""
    import shutil

    from agent.store import migrations
    from tests import quadratic_backfill

    db = store_before_the_backfill(tmp_path / "released.sqlite")
    add_studies(db, 300)
    db.conn.close()
    shutil.copy(tmp_path / "released.sqlite", tmp_path / "today.sqlite")
    released, today = sqlite_utils_db(tmp_path / "released.sqlite"), sqlite_utils_db(tmp_path / "today.sqlite")
    for statement in migrations._statements(quadratic_backfill.SQL):
        released.execute(statement)
    migrations.apply(today)
    assert len({p for p in phantoms(released).values()}) == 3  # head, body and None all occur
    assert phantoms(today) == phantoms(released)
    released.conn.close()
    today.conn.close()


def upgrade_work(path, studies: int) -> int:
    """SQLite instructions (in thousands) the upgrade of a store of ``studies`` studies kept before migration 13
    executes: what the time an upgrade takes grows with, without a clock."""
    from agent.store import migrations

    db = store_before_the_backfill(path)
    add_studies(db, studies)
    work = [0]

    def tick() -> int:
        work[0] += 1
        return 0

    db.conn.set_progress_handler(tick, 1000)
    assert migrations.apply(db)[0] == 13
    db.conn.close()
    return work[0]


def test_an_upgrade_grows_with_the_studies_kept_not_with_their_square(tmp_path):
    """Migration 13 looked each sample's event and study up in an unindexed temporary table: its upgrade of a
    store of 7,000 studies took 4.5 s on a PC, of 14,000 18 s, of 100,000 a quarter of an hour (longer on the
    station's own hardware). Four times the studies: about four times the work."""
    small, large = upgrade_work(tmp_path / "small.sqlite", 400), upgrade_work(tmp_path / "large.sqlite", 1600)
    assert large < 8 * small, (small, large)  # (the released migration 13: 16 times)


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


def test_an_upgrade_gives_samples_of_reports_without_event_uids_their_phantom_and_time_as_today(tmp_path):
    """A report that names no Irradiation Event UID (a CT dose screen, an image's header) keeps its per-series
    samples under ``SOP#n``, not under an event: migrations 13 and 14 looked samples up by event only and left
    these without their phantom and without when the examination was performed, so after an upgrade a backfill of
    older such reports still displaced recent ones in the rolling median, and their values counted for either
    phantom. The upgrade must leave what today's version records for the same reports."""
    import dataclasses

    from tests.checks.conftest import Checked, ct_event, ct_report, rules_from

    path = tmp_path / "agent.sqlite"
    store = Store.open(path)
    checked = Checked(store, rules_from())
    for n, (uid, phantom) in enumerate([(None, "IEC Head Dosimetry Phantom"), (None, "IEC Body Dosimetry Phantom"),
                                        ("1.2.3.4.5", "IEC Body Dosimetry Phantom")]):
        report = ct_report([ct_event("Abdomen", 12.0 + n, 400.0, target_region="Abdomen", phantom=phantom),
                            ct_event("Abdomen", 14.0 + n, 500.0, target_region="Abdomen", phantom=phantom)])
        events = [dataclasses.replace(e, irradiation_event_uid=uid and f"{uid}.{i}")
                  for i, e in enumerate(report.events)]
        checked.ingest(dataclasses.replace(report, events=events, study=dataclasses.replace(
            report.study, datetime=f"2017-05-1{n}T09:00:00")))
    query = "SELECT subject, quantity, phantom, performed_at FROM check_samples WHERE scope = 'per_event' ORDER BY 1, 2"
    today = store.db.execute(query).fetchall()
    assert len([s for s in today if "#" in s[0]]) >= 4
    with store.transaction() as tx:  # the store as a version before migration 12 left it
        tx.execute("DROP INDEX check_samples_window")
        tx.execute("ALTER TABLE check_samples DROP COLUMN performed_at")
        tx.execute("ALTER TABLE check_samples DROP COLUMN phantom")
        tx.execute("CREATE INDEX check_samples_window ON check_samples(station, exam, quantity, scope)")
        tx.execute("DELETE FROM schema_migrations WHERE version BETWEEN 12 AND 19")
    store.close()
    upgraded = Store.open(path)
    assert upgraded.db.execute(query).fetchall() == today
    upgraded.close()
