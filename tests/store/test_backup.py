"""The backup the README documents (Operations), run as hospital IT runs it: with Debian's sqlite3, on a store
that the running agent goes on writing to."""
import re
import shutil
import subprocess
import threading
import time

import pytest

from agent.store import Store
from tests.conftest import REPO

INSTALLED_STORE = "/var/lib/alara-edge/alara-edge.sqlite"
BACKUP = "/backup/alara-edge.sqlite"


def readme_backup_command() -> str:
    """The README's backup command: the code span (it may go over two lines) that runs `sqlite3` on the
    installed store."""
    operations = (REPO / "README.md").read_text().split("\n## Operations\n")[1].split("\n## ")[0]
    spans = [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", operations)
             if f"sqlite3 {INSTALLED_STORE}" in s and BACKUP in s]
    assert len(spans) == 1, spans
    return spans[0]


def test_the_documented_backup_finishes_while_the_agent_writes_and_the_copy_is_a_whole_store(tmp_path):
    """SQLite's online backup (`.backup`) copies 100 pages at a time and starts again from the first whenever
    another process commits in between: on a store of years of reports, with the agent committing often (a
    backlog draining at 100 messages/s, serial dosimeters), it never finished and the backup job hung."""
    if not shutil.which("sqlite3"):
        pytest.fail("Debian's sqlite3 is missing (tools/system-packages.sh installs it)")
    path = tmp_path / "var" / "alara-edge.sqlite"
    store = Store.open(path)
    with store.transaction() as tx:  # a store of a few years: about 40 MB of receipts
        tx.conn.executemany(
            "INSERT INTO receipts (received_at, origin, path, sha256, size_bytes, status, reason) "
            "VALUES ('2026-01-01T00:00:00Z', 'dicom', 'spool/x.dcm', 'x', 1, 'rejected', ?)",
            [(f"{n:08d}" * 128,) for n in range(40_000)])
    committed, stop = [], threading.Event()

    def agent_writes() -> None:  # the agent goes on committing, every 5 ms
        n = 0
        while not stop.is_set():
            n += 1
            with store.transaction() as tx:
                tx.execute("INSERT INTO counters (name, value) VALUES (?, ?)", [f"w{n}", n])
            committed.append(n)
            time.sleep(0.005)

    writer = threading.Thread(target=agent_writes)
    writer.start()
    try:
        time.sleep(0.2)
        backup = tmp_path / "backup" / "alara-edge.sqlite"
        backup.parent.mkdir()
        command = readme_backup_command().replace(INSTALLED_STORE, str(path)).replace(BACKUP, str(backup))
        for night in (1, 2):  # a nightly job: the second run replaces the first night's copy
            try:
                subprocess.run(command, shell=True, check=True, timeout=30, capture_output=True)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the documented backup ran for over 30 s while the agent was writing: {command}")
            if night == 1:
                before = len(committed)
    finally:
        stop.set()
        writer.join()
        store.close()
    restored = tmp_path / "restored" / "alara-edge.sqlite"
    restored.parent.mkdir()
    shutil.copy(backup, restored)
    copy = Store.open(restored)  # the agent takes it as its store (checked, migrated: nothing to do)
    try:
        assert copy.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0] == 40_000
        kept = {name for (name,) in copy.db.execute("SELECT name FROM counters WHERE name LIKE 'w%'")}
        assert {f"w{n}" for n in range(1, before + 1)} <= kept  # everything committed before the second night's began
        assert copy.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        copy.close()
