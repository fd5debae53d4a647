"""The inbox: received objects made durable with one commit, before anything else is done to them.

A C-STORE may be answered *Success* once its object is durable.  Writing the object to the
spool durably takes three flushes (the file, its directory, the receipt row); putting it as
one row in this small SQLite file takes one (the WAL), so the modality waits for the least
possible.  The pipeline's worker then takes the rows in order, spools, extracts, checks and
stores each one, and removes the row only after the report's transaction has committed.  A
row still here at start-up (the agent was stopped or killed in between) is processed then.

A row also counts the runs that died while reading, extracting or checking it (``attempts``; the
disk's part, spooling and committing, does not count): an object that kills or hangs the agent
each time (a crash in a library, memory exhausted, a stall the watchdog ends) would otherwise be
taken first again at every start, and nothing behind it would ever be processed.  The pipeline
sets such a row aside instead of processing it (``MAX_ATTEMPTS``).  While it works on that part it
names the object in a small file beside the inbox (``<inbox>-inhand``, one write, not flushed:
what a dead process wrote is in the operating system already); the next start counts a death
against the object the file still names.  Rows found at start are listed without their bytes,
which are read one object at a time as they are processed.

The inbox is its own file (``<store>-inbox.sqlite``) with its own connection, so that taking
a receipt never waits for the store's writer.  Its rows are ordered by ``id``.  A damaged file (a
power cut on a card that acknowledged writes it had not made) is checked for at start, as the
store is, and set aside; the objects that can still be read from it are taken into a new inbox.
"""
from __future__ import annotations

import os
import sqlite3
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import structlog

from .db import StoreError, quarantine_if_corrupt

log = structlog.get_logger("agent.store")

SCHEMA_VERSION = 4
MAX_ATTEMPTS = 3  # runs that died with an object in hand: the next start sets it aside
FREE_PAGES_KEPT = 1024  # pages (4 MiB) of free space the file may keep for the next objects
WAL_LIMIT_BYTES = 4 * 1024 * 1024  # the WAL is cut back to this after a checkpoint
WRITE_CHUNK = 1 << 20  # put() writes an object's bytes into its row this much at a time
ROW_MARGIN = 64 << 10  # of SQLite's maximum length of a row, kept for the row's other columns
SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,   -- Unix time the object was complete
    origin TEXT NOT NULL,        -- dicom | import
    calling_ae TEXT, called_ae TEXT, peer TEXT,
    data BLOB NOT NULL,          -- the object as a DICOM file (preamble, meta, dataset)
    attempts INTEGER NOT NULL DEFAULT 0, -- runs that died while reading, extracting or checking it
    received_size INTEGER        -- the object's size as received, when its pixel data was left out (else NULL)
)
"""
ADD_ATTEMPTS = "ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0"  # schema 1 → 2
# Schema 3: the count is kept in a table of its own (inbox.attempts is no longer used): updating a
# column of the object's row made SQLite read the whole object into memory, twice per object (a
# 400 MB image: 400 MB more at once, and seconds).  A row's count goes with the row.
TRIES_TABLE = "CREATE TABLE IF NOT EXISTS tries (id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL)"
TRIES_TRIGGER = ("CREATE TRIGGER IF NOT EXISTS tries_go_with_the_row AFTER DELETE ON inbox "
                 "BEGIN DELETE FROM tries WHERE id = old.id; END")
COPY_TRIES = "INSERT OR REPLACE INTO tries (id, attempts) SELECT id, attempts FROM inbox WHERE attempts > 0"  # 2 → 3
ADD_RECEIVED_SIZE = "ALTER TABLE inbox ADD COLUMN received_size INTEGER"  # 3 → 4 (no row is rewritten)
IN_HAND = struct.Struct("<qd")  # the -inhand file: the object in hand's row id (0 for none) and its received_at


@dataclass
class Item:
    """One received object waiting to be processed."""

    id: int
    received_at: float
    origin: str
    calling_ae: Optional[str]
    called_ae: Optional[str]
    peer: Optional[str]
    data: Optional[bytes]  # None for a row found at start: read when it is processed (load()), so that
    # a backlog is never all in memory at once
    size: int
    attempts: int = 0  # earlier runs that died with it in hand
    received_size: Optional[int] = None  # the size received, when its pixel data was left out at receipt


def path_for(store_path: Path) -> Path:
    """``var/agent.sqlite`` → ``var/agent-inbox.sqlite``."""
    store_path = Path(store_path)
    return store_path.with_name(f"{store_path.stem}-inbox{store_path.suffix or '.sqlite'}")


class Inbox:
    """A durable FIFO of received objects. Thread-safe; one per store (the store's writer lock covers it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        damaged = quarantine_if_corrupt(self.path) if self.path.exists() and self.path.stat().st_size else None
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # (takes effect on a new file) see remove()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # put() returns only once the row is on disk
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version < SCHEMA_VERSION:
            exists = self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'inbox'").fetchone()
            self._conn.execute("BEGIN IMMEDIATE")  # the change and its version together, or neither
            try:
                if not exists:
                    self._conn.execute(SCHEMA)
                elif version < 2:
                    self._conn.execute(ADD_ATTEMPTS)
                self._conn.execute(TRIES_TABLE)
                self._conn.execute(TRIES_TRIGGER)
                if exists and version < 3:
                    self._conn.execute(COPY_TRIES)
                if exists:
                    self._conn.execute(ADD_RECEIVED_SIZE)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        try:
            self._hand = os.open(hand_path(self.path), os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:  # (said as the inbox's error, with the file's name: not a port that cannot be bound)
            self._conn.close()
            raise StoreError(f"{exc.strerror}: {exc.filename} (the agent's user must be able to write it)") from exc
        held, held_at = _held(self._hand)
        if damaged is not None:
            if held:  # the rows taken in get new ids: the name is of none of them, also for a start that dies
                self.holding(None)  # while taking them in (flushed: a power cut again, say)
                os.fsync(self._hand)
                held = 0
            self._take_in(damaged)
        if held:  # the last run died with it in hand (a row gone since, or set aside, counts nothing; nor
            # does another object given its id since, the inbox having emptied: the file, not flushed, can
            # be older than the inbox after a power cut)
            if self._conn.execute("SELECT 1 FROM inbox WHERE id = ? AND received_at = ?", (held, held_at)).fetchone():
                self.taken(held)
            self.holding(None)

    def _take_in(self, damaged: Path) -> None:
        """Put the objects that can still be read from a damaged inbox, set aside at ``damaged``, into this
        one, in their order, with the time they were received (an object an earlier run had stored is then
        recognised as such).  The damaged file is left as it is."""
        recovered, unreadable = 0, 0
        try:
            old = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
        except sqlite3.Error:
            old = None
        try:
            ids: list[int] = []
            try:
                if old is None:
                    raise sqlite3.DatabaseError("cannot be opened")
                cut = "received_size" if old.execute("PRAGMA user_version").fetchone()[0] >= 4 else "NULL"
                ids.extend(row[0] for row in old.execute("SELECT id FROM inbox ORDER BY id"))
            except sqlite3.DatabaseError:
                unreadable = None  # the rows past the damage cannot even be counted
            for item_id in ids:
                try:
                    row = old.execute(f"SELECT data, received_at, origin, calling_ae, called_ae, peer, {cut} FROM "
                                      "inbox WHERE id = ?", (item_id,)).fetchone()
                except sqlite3.DatabaseError:
                    row = None
                if row is None:
                    unreadable = None if unreadable is None else unreadable + 1
                    continue
                self.put(*row)
                recovered += 1
        finally:
            if old is not None:
                old.close()
        log.error("inbox_quarantined", path=str(self.path), moved_to=str(damaged), objects_recovered=recovered,
                  objects_unreadable=unreadable,
                  hint="the objects read from it are processed now; " + (
                      "none was left unread" if unreadable == 0 else
                      "those that could not be read are not in the store: have the modalities send the dose "
                      "reports of the hours before this line again (a report stored already is not counted twice)"))

    def put(self, data: bytes, received_at: float, origin: str, calling_ae: str | None = None,
            called_ae: str | None = None, peer: str | None = None, received_size: int | None = None) -> Item:
        """Store one object durably; raises ``sqlite3.Error`` (disk full, read-only) if it cannot.
        ``received_size``: the object's size as received, when ``data`` is it without its pixel data.

        The bytes are written into the row piece by piece (:data:`WRITE_CHUNK`): bound as one value,
        SQLite copied them twice in memory, and a 400 MB angiography run took 1.2 GB more at once."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO inbox (received_at, origin, calling_ae, called_ae, peer, received_size, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, zeroblob(?))",
                    (received_at, origin, calling_ae, called_ae, peer, received_size, len(data)))
                if data:
                    view = memoryview(data)
                    with self._conn.blobopen("inbox", "data", cur.lastrowid) as blob:
                        for start in range(0, len(view), WRITE_CHUNK):
                            blob.write(view[start:start + WRITE_CHUNK])
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # (SQLite may have rolled back already, on a full disk)
                    self._conn.execute("ROLLBACK")
                raise
        return Item(cur.lastrowid, received_at, origin, calling_ae, called_ae, peer, data, len(data),
                    received_size=received_size)

    def max_object_bytes(self) -> int:
        """The largest object a row can hold: SQLite's maximum length of a value, and of a row (1e9 bytes
        unless SQLite was built otherwise), less :data:`ROW_MARGIN`."""
        with self._lock:
            return self._conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) - ROW_MARGIN

    def pending(self) -> list[Item]:
        """Every row, oldest first (at start-up: what an earlier run received but did not finish),
        without the objects' bytes (:meth:`load` reads them)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.id, received_at, origin, calling_ae, called_ae, peer, NULL, length(data), "
                "COALESCE(t.attempts, 0), received_size FROM inbox i LEFT JOIN tries t ON t.id = i.id "
                "ORDER BY i.id").fetchall()
        return [Item(*row) for row in rows]

    def load(self, item: Item) -> bytes:
        """The object's bytes (read from the file for a row found at start)."""
        if item.data is not None:
            return item.data
        with self._lock:
            (data,) = self._conn.execute("SELECT data FROM inbox WHERE id = ?", (item.id,)).fetchone()
        return data

    def taken(self, item_id: int) -> None:
        """Count a run that died while the object was in the part of its processing it can make fail
        (the start after it does, from the -inhand file).  Not flushed on its own, as for a removal:
        the next put()'s flush of the log carries it."""
        self._unflushed("INSERT INTO tries (id, attempts) SELECT id, 1 FROM inbox WHERE id = ? "
                        "ON CONFLICT (id) DO UPDATE SET attempts = attempts + 1", (item_id,))

    def holding(self, item: Item | None) -> None:
        """Name the object whose processing enters the part it can make fail (reading, extraction, the
        stages), or (None) none: a run that dies in between leaves its name for the next start, which
        counts a death against it (:meth:`taken`).  One write, not flushed (a power cut is not the
        object's fault); raises ``OSError``."""
        os.pwrite(self._hand, IN_HAND.pack(item.id, item.received_at) if item else IN_HAND.pack(0, 0.0), 0)

    def remove(self, item_ids: list[int]) -> None:
        """The objects' reports (or failure receipts) have committed: their rows are no longer needed."""
        # a delete lost to a crash only means the rows are recognised as processed at the next start;
        # the next put()'s flush of the log carries it to disk
        self._unflushed(f"DELETE FROM inbox WHERE id IN ({','.join('?' * len(item_ids))})", tuple(item_ids))
        with self._lock:
            # after a burst of large objects, give the space back instead of keeping the high-water mark
            if self._conn.execute("PRAGMA freelist_count").fetchone()[0] > FREE_PAGES_KEPT:
                self._conn.executescript("PRAGMA incremental_vacuum;")  # (execute() would free one page)

    def _unflushed(self, sql: str, params: tuple) -> None:
        with self._lock:
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute(sql, params)
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")  # every put() is flushed

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            os.close(self._hand)


def hand_path(inbox_path: Path) -> Path:
    """``var/agent-inbox.sqlite`` → ``var/agent-inbox.sqlite-inhand``."""
    return Path(f"{inbox_path}-inhand")


def _held(fd: int) -> tuple[int, float]:
    """The object an -inhand file names: its row id (0: none, or a file too short to name one) and received_at."""
    data = os.pread(fd, IN_HAND.size, 0)
    return IN_HAND.unpack(data) if len(data) == IN_HAND.size else (0, 0.0)


def count_pending(store_path: Path) -> tuple[int, int]:
    """Objects received but not yet processed, and of them those held back because the agent died
    with them in hand :data:`MAX_ATTEMPTS` times (not processed again; a start sets them aside).
    Read without opening the inbox for writing (CLI)."""
    path = path_for(store_path)
    if not path.exists():
        return 0, 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version < 2:
            return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0], 0
        counts = "attempts" if version < 3 else "COALESCE((SELECT attempts FROM tries t WHERE t.id = i.id), 0)"
        try:  # the object in hand when the agent died is counted at its next start: count it now too
            fd = os.open(hand_path(path), os.O_RDONLY)
            try:
                in_hand = _held(fd)
            finally:
                os.close(fd)
        except OSError:
            in_hand = (0, 0.0)
        deaths = f"{counts} + (i.id = ? AND i.received_at = ?)"
        total, held = conn.execute(f"SELECT COUNT(*), COALESCE(SUM({deaths} >= ?), 0) FROM inbox i",
                                   (*in_hand, MAX_ATTEMPTS)).fetchone()
        return int(total), int(held)
    except sqlite3.Error:
        return 0, 0
    finally:
        conn.close()
