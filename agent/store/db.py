"""The SQLite store: one writer connection, durable commits, versioned migrations.

Every connection runs WAL with ``synchronous=FULL``: a commit that returned is on disk, so
the agent may acknowledge a C-STORE (or a serial reading, or a PUBACK) after it.  All writes
go through :meth:`Store.transaction`, which serialises them on a single connection (SQLite's
WAL-reset bug before 3.51.3 corrupts databases written by two connections at once).  Readers
open their own read-only connections with :meth:`Store.reader`.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import sqlite_utils
import structlog

from agent.startup import Startup

from . import migrations

log = structlog.get_logger("agent.store")


WAL_LIMIT_BYTES = 8 * 1024 * 1024  # what a checkpoint leaves of the log after a burst or a long read


class StoreError(Exception):
    """The store cannot take a write (disk full, read-only, quota reached)."""


class QuotaExceeded(StoreError):
    pass


def first_unwritable(*paths: Path) -> Path | None:
    """The first of ``paths`` (those that exist) this process may not write: on a file system mounted
    read-only (an SD card's, remounted by the kernel after I/O errors), or whose mode or owner keeps this
    user out (a restored copy owned by root)."""
    for path in paths:
        try:
            if os.statvfs(path).f_flag & os.ST_RDONLY or not os.access(path, os.W_OK):
                return path
        except FileNotFoundError:  # not made yet (a spool before its first object, a log not yet written)
            continue
    return None


class StoreBusy(StoreError):
    """Another process (a running agent) is the store's writer."""


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")  # a checkpointed WAL is cut back, not kept at its peak
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")


def connect(path: str | os.PathLike) -> sqlite_utils.Database:
    """Open ``path`` with the store's pragmas (WAL, synchronous=FULL). For readers and tools."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    _configure(conn)
    return sqlite_utils.Database(conn)


class Store:
    """The agent's durable state. Create with :meth:`open`."""

    def __init__(self, path: Path, db: sqlite_utils.Database, quota_bytes: int | None = None, lock_fd: int | None = None):
        self._lock_fd = lock_fd
        self.path = path
        self.db = db
        self.quota_bytes = quota_bytes
        self.damaged: str | None = None  # SQLite found the file damaged while running: what it said
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | os.PathLike, quota_bytes: int | None = None, startup: Startup | None = None,
             spool_dir: str | os.PathLike | None = None) -> "Store":
        """Open (create, check, migrate) the store. ``startup``: the agent's start-up, told each step and
        the progress of its SQLite work (what systemd hears before READY).  ``spool_dir``: where the received
        objects are kept, named in the hint of a damaged store set aside."""
        startup = startup or Startup()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            raise StoreError(f"{path.parent} is on a file system mounted read-only (the kernel remounts an SD card "
                             "so after I/O errors: check the card and the kernel's messages, dmesg)")
        lock_fd = _lock_writer(path)
        if path.exists() and not os.access(path, os.W_OK):  # SQLite would open it read-only and fail each write
            os.close(lock_fd)
            raise StoreError(f"{path} is not writable by this user: give it to the user the agent runs as "
                             f"(a restored copy: chown alara-edge:alara-edge {path})")
        if path.exists() and path.stat().st_size > 0:
            startup.step("checking the store (quick_check)")
            try:
                aside = quarantine_if_corrupt(path, startup)
            except StoreError:
                os.close(lock_fd)
                raise
            if aside is not None:
                spool = spool_dir if spool_dir is not None else "<[store] spool_dir>"
                log.error("store_quarantined", path=str(path), moved_to=str(aside),
                          hint="the reports stored before are not in the new store; the spool keeps their files: "
                               f"alara-edge import {spool} brings them back (the central site gets each once)")
        db = connect(path)
        store = cls(path, db, quota_bytes, lock_fd)
        try:
            with store._lock, startup.watching(db.conn):
                migrations.apply(db, startup.step)
        except migrations.NewerStore as exc:  # closed once no longer watched (which needs the connection open)
            store.close()
            raise StoreError(str(exc)) from None
        return store

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the writer lock
                self._lock_fd = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One atomic, durable write. Raises :class:`StoreError` if it cannot commit."""
        with self._lock:
            try:
                with self.db.atomic():
                    yield self.db
            except sqlite3.OperationalError as exc:  # disk full, read-only, I/O error
                raise StoreError(str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                if is_corrupt(exc):  # only a start can set the file aside (quick_check): say it is needed
                    self.damaged = str(exc)
                raise StoreError(str(exc)) from exc

    def unwritable(self) -> Path | None:
        """The store's file, log or folder that cannot be written now, if any.  A transaction that changes
        nothing still commits on a store whose file system turned read-only while it was open (SQLite
        writes nothing to commit it), so health checks ask the file system too."""
        return first_unwritable(self.path, Path(f"{self.path}-wal"), self.path.parent)

    def reader(self) -> sqlite_utils.Database:
        """A separate connection for reads (console, CLI); never used to write."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return sqlite_utils.Database(conn)

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total


def _lock_writer(path: Path) -> int:
    """One writer process per store: an exclusive ``flock`` on ``<db>.lock``, held while open."""
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"{path} is open for writing by another process (is the agent running?)")
    return fd


CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)  # error codes that say the file itself is damaged


def is_corrupt(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite saying the file is damaged ("database disk image is malformed")."""
    return getattr(exc, "sqlite_errorcode", None) in CORRUPT


def quarantine_if_corrupt(path: Path, startup: Startup | None = None) -> Path | None:
    """``quick_check`` at start; a corrupt file is renamed aside with its log (never deleted), and the agent
    starts fresh: where it went (None: it is sound).  ``StoreError`` if it cannot be checked."""
    startup = startup or Startup()
    try:
        conn = sqlite3.connect(str(path))
        try:
            with startup.watching(conn):  # reads every page: long for a large store on an SD card
                ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not is_corrupt(exc):  # a full disk, an I/O error: not the file's fault
            free = shutil.disk_usage(path.parent).free if path.parent.exists() else None
            full = (f" (the disk is full: {free:,} bytes free in {path.parent})"
                    if free is not None and free < 1 << 20 else "")
            raise StoreError(f"cannot check {path}: {exc}{full}") from exc
        ok = False
    if ok:
        return None
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.rename(Path(str(aside) + suffix))
    return aside
