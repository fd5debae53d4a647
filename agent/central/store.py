"""The central receiver's database: SQLite (a file path) or PostgreSQL (a ``postgresql://`` URL).

Writes are idempotent: ``event_id`` is the primary key, so a message delivered twice (MQTT QoS 1
is at least once) is stored once and counted in ``duplicates_dropped``.  Every batch is one
transaction, committed before the messages are acknowledged to the broker.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from agent.uplink.payloads import now_iso as _now

KINDS = ("report", "alert", "ack", "reading", "status")
# what record() did with each message: stored; a copy of a known event that its store numbered otherwise (its
# seq kept in central_seq_aliases); a plain duplicate (nothing new)
STORED, COPY, DUPLICATE = "stored", "copy", "duplicate"
MISSING_RANGES_SHOWN = 20
MIGRATION_LOCK = 0x616C617261  # PostgreSQL advisory lock key held while the schema is brought up to date


def _v1(postgres: bool) -> list[str]:
    json_type = "JSONB" if postgres else "TEXT"
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY"
    # IF NOT EXISTS: databases created before the schema was versioned already hold these tables
    return [
        f"""CREATE TABLE IF NOT EXISTS central_events (
            event_id TEXT PRIMARY KEY,
            site TEXT NOT NULL, station TEXT NOT NULL, kind TEXT NOT NULL, seq BIGINT NOT NULL,
            schema_name TEXT NOT NULL, schema_version INTEGER NOT NULL,
            created TEXT NOT NULL, sent TEXT NOT NULL, received_at TEXT NOT NULL,
            envelope {json_type} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS central_events_station ON central_events (site, station, seq)",
        f"""CREATE TABLE IF NOT EXISTS central_stations (
            site TEXT NOT NULL, station TEXT NOT NULL,
            duplicates_dropped BIGINT NOT NULL DEFAULT 0,
            status_received BIGINT NOT NULL DEFAULT 0,
            last_status {json_type}, last_status_at TEXT, last_received_at TEXT,
            PRIMARY KEY (site, station))""",
        f"""CREATE TABLE IF NOT EXISTS central_rejects (
            id {serial}, received_at TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT)""",
    ]


def _v2(postgres: bool) -> list[str]:
    return [
        "ALTER TABLE central_events ADD COLUMN store TEXT",  # the station's store that numbered seq (NULL: older agents)
        "CREATE INDEX central_events_series ON central_events (site, station, store, seq)",
    ]


def _v3(postgres: bool) -> list[str]:
    # a copy of a known event that another store (or station) numbered: its seq is not missing there
    return [
        """CREATE TABLE central_seq_aliases (
            site TEXT NOT NULL, station TEXT NOT NULL, store TEXT NOT NULL, seq BIGINT NOT NULL,
            event_id TEXT NOT NULL, received_at TEXT NOT NULL, created TEXT NOT NULL,
            PRIMARY KEY (site, station, store, seq, event_id))""",
    ]


# Every seq a station's store has been heard with: its stored events, and the copies of events first
# stored under another store or station ('' in central_seq_aliases is NULL, an agent that named no store).
NUMBERED = ("(SELECT site, station, store, seq, event_id, received_at, created FROM central_events UNION ALL "
            "SELECT site, station, NULLIF(store, ''), seq, event_id, received_at, created FROM central_seq_aliases) e")


# Versioned schema steps (version, name, statements for SQLite or PostgreSQL); versions only grow
# and a released step is never edited: a change is a new step that migrates what is there.
SCHEMA: list[tuple[int, str, Callable[[bool], list[str]]]] = [
    (1, "events, stations, rejects", _v1),
    (2, "store of each event", _v2),
    (3, "seq numbers of copies from another store", _v3),
]


@dataclass
class Message:
    """One accepted message (already validated by :func:`agent.central.receiver.parse`)."""

    site: str
    station: str
    kind: str
    event_id: str
    seq: int
    store: Optional[str]  # the station's store that numbered seq; None from agents before the field existed
    schema_name: str
    schema_version: int
    created: str
    sent: str
    envelope: str  # the JSON text as received


class CentralStoreError(Exception):
    def __init__(self, message: str, data: bool = False):
        super().__init__(message)
        self.data = data
        """The database refused a value (not the connection): the same message would fail again."""


class CentralStore:
    """Open with :meth:`open`; ``record`` a batch, ``reject`` what cannot be read, ``stations`` for reports."""

    def __init__(self, database: str, must_exist: bool = False, migrate: bool = True):
        self.database = database
        self.postgres = database.startswith(("postgresql://", "postgres://"))
        if must_exist and not self.postgres and not Path(database).is_file():
            raise CentralStoreError(f"no central database at {database}: the receiver (alara-edge central) "
                                    "creates it when it first starts; check [central] database")
        self.migrate = migrate  # False: only read (no schema step, no switch to WAL)
        self.p = "%s" if self.postgres else "?"
        self.j = "%s::jsonb" if self.postgres else "?"
        self.conn: Any = self._connect()
        self._first_store: dict[tuple[str, str], str] = {}  # per site and station, see _first_named_store
        try:
            self._create() if migrate else self._check_schema()
        except CentralStoreError:
            self.conn.close()
            raise

    @classmethod
    def open(cls, database: str, must_exist: bool = False, migrate: bool = True) -> "CentralStore":
        """``must_exist``: a SQLite file that is not there is an error instead of a new, empty database.
        ``migrate=False`` (for reading, ``central-report``): a schema that is not this version's is an
        error instead of being brought up to date; nothing is written."""
        return cls(database, must_exist, migrate)

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            try:
                return psycopg.connect(self.database)
            except psycopg.Error as exc:
                raise CentralStoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            path = Path(self.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            if self.migrate:
                _wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        except (OSError, sqlite3.Error) as exc:
            raise CentralStoreError(f"cannot open {self.database}: {exc}") from exc

    def reopen(self) -> None:
        """After an error (PostgreSQL restarted, connection lost): a fresh connection."""
        try:
            self.conn.close()
        except Exception:  # already broken
            pass
        self.conn = self._connect()

    def close(self) -> None:
        self.conn.close()

    def _create(self) -> None:
        """Bring the schema to :data:`SCHEMA` in order, each step recorded in ``central_schema``.

        Receivers started together (shared subscriptions) on one database take turns: PostgreSQL
        by an advisory lock, SQLite by ``BEGIN IMMEDIATE``.  A database that a newer alara-edge has
        migrated further is refused rather than written with an outdated idea of its tables.
        """
        try:
            if self.postgres:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            else:
                self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("CREATE TABLE IF NOT EXISTS central_schema (version INTEGER PRIMARY KEY, "
                              "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            applied = self.schema_version()
            self._refuse_newer(applied)
            for version, name, statements in SCHEMA:
                if version > applied:
                    for sql in statements(self.postgres):
                        self.conn.execute(sql)
                    self.conn.execute(f"INSERT INTO central_schema (version, name, applied_at) "
                                      f"VALUES ({self.p}, {self.p}, {self.p})", (version, name, _now()))
            self.conn.commit()
        except CentralStoreError:
            self.conn.rollback()
            raise
        except Exception as exc:  # psycopg.Error, sqlite3.Error
            self.conn.rollback()
            raise CentralStoreError(f"cannot prepare {safe_database(self.database)}: {exc}") from exc

    def _check_schema(self) -> None:
        try:
            if self.postgres:
                (exists,) = self.conn.execute("SELECT to_regclass('central_schema') IS NOT NULL").fetchone()
            else:
                exists = self.conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'central_schema'").fetchone()
            applied = self.schema_version() if exists else 0
            self.conn.rollback()
        except Exception as exc:  # psycopg.Error, sqlite3.Error
            raise CentralStoreError(f"cannot read {safe_database(self.database)}: {exc}") from exc
        self._refuse_newer(applied)
        if applied < SCHEMA[-1][0]:
            raise CentralStoreError(
                f"{safe_database(self.database)} has central schema version {applied}; this alara-edge uses "
                f"{SCHEMA[-1][0]}. Start the receiver (alara-edge central) once to bring it up to date; reading it "
                "changes nothing")

    def _refuse_newer(self, applied: int) -> None:
        """A database that a newer alara-edge has migrated further is neither written nor read."""
        if applied > SCHEMA[-1][0]:
            raise CentralStoreError(
                f"{safe_database(self.database)} has central schema version {applied}, newer than this alara-edge "
                f"knows ({SCHEMA[-1][0]}): run the newer alara-edge, or point [central] database elsewhere")

    def schema_version(self) -> int:
        (version,) = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM central_schema").fetchone()
        return int(version)

    # -- writes ---------------------------------------------------------------------------------
    def record(self, messages: list[Message]) -> list[str]:
        """Store a batch in one transaction; per message :data:`STORED` (a status too), :data:`COPY` or
        :data:`DUPLICATE`."""
        p, j = self.p, self.j
        now = _now()
        outcomes: list[str] = []
        try:
            for m in messages:
                self.conn.execute(
                    f"INSERT INTO central_stations (site, station) VALUES ({p}, {p}) ON CONFLICT DO NOTHING",
                    (m.site, m.station))
                if m.kind == "status":
                    self.conn.execute(
                        f"UPDATE central_stations SET status_received = status_received + 1, last_status = {j}, "
                        f"last_status_at = {p}, last_received_at = {p} WHERE site = {p} AND station = {p}",
                        (m.envelope, now, now, m.site, m.station))
                    outcomes.append(STORED)
                    continue
                cur = self.conn.execute(
                    f"INSERT INTO central_events (event_id, site, station, kind, seq, store, schema_name, "
                    f"schema_version, created, sent, received_at, envelope) "
                    f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {j}) ON CONFLICT (event_id) DO NOTHING",
                    (m.event_id, m.site, m.station, m.kind, m.seq, m.store, m.schema_name, m.schema_version,
                     m.created, m.sent, now, m.envelope))
                new = cur.rowcount == 1
                outcomes.append(STORED if new else COPY if self._alias(m, now) else DUPLICATE)
                column = "last_received_at" if new else "duplicates_dropped"
                value = p if new else "duplicates_dropped + 1"
                self.conn.execute(
                    f"UPDATE central_stations SET {column} = {value} WHERE site = {p} AND station = {p}",
                    ((now,) if new else ()) + (m.site, m.station))
            self.conn.commit()
        except Exception as exc:
            try:
                self.conn.rollback()
            except Exception:  # the connection itself is gone; reopen() follows
                pass
            raise CentralStoreError(str(exc), data=_refused_value(exc)) from exc
        return outcomes

    def _alias(self, m: Message, now: str) -> bool:
        """A duplicate that its station's store numbered otherwise than the stored copy (a station given
        a new store re-sends what it had sent before; one object sent to two stations): keep its seq, so
        that it is not shown missing there.  True if that numbering is new."""
        p = self.p
        row = self.conn.execute(f"SELECT site, station, store, seq FROM central_events WHERE event_id = {p}",
                                (m.event_id,)).fetchone()
        if row is None or tuple(row) == (m.site, m.station, m.store, m.seq):
            return False
        cur = self.conn.execute(
            f"INSERT INTO central_seq_aliases (site, station, store, seq, event_id, received_at, created) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING",
            (m.site, m.station, m.store or "", m.seq, m.event_id, now, m.created))
        return cur.rowcount == 1

    def reused(self, messages: list[Message]) -> list[bool]:
        """Per message (each a new numbering: :data:`STORED` or :data:`COPY`), whether its station's store
        numbered another event with the same seq, as ``seq_reused`` in :meth:`stations` counts it.

        Read after the batch has committed: of two receivers (a shared subscription) storing two such
        events at once, the one committing last sees the other's.  Two indexed look-ups per message."""
        try:
            found = [self._numbered_alike(m) for m in messages]
            self.conn.rollback()  # only read: end PostgreSQL's transaction
        except Exception as exc:  # psycopg.Error, sqlite3.Error
            raise CentralStoreError(str(exc)) from exc
        return found

    def _numbered_alike(self, m: Message) -> bool:
        """Another event with ``m``'s site, station, store and seq (stored, or a copy's numbering)."""
        p = self.p
        # the copies kept under m's store and under none; an agent naming no store (rare now): under any
        by_store, store_args = ("", ()) if m.store is None else (f" AND store IN ({p}, '')", (m.store,))
        rows = self.conn.execute(
            f"SELECT store FROM central_events WHERE site = {p} AND station = {p} AND seq = {p} AND event_id <> {p} "
            f"UNION ALL SELECT NULLIF(store, '') FROM central_seq_aliases WHERE site = {p} AND station = {p} "
            f"AND seq = {p} AND event_id <> {p}{by_store}",
            (m.site, m.station, m.seq, m.event_id) * 2 + store_args).fetchall()
        stores = {store for (store,) in rows}
        if m.store in stores:
            return True
        # the messages that named no store count in the station's first store (stations())
        if m.store is None:
            return any(s is not None for s in stores) and self._first_named_store(m.site, m.station) in stores
        return None in stores and m.store == self._first_named_store(m.site, m.station)

    def _first_named_store(self, site: str, station: str) -> Optional[str]:
        """The station's first store, ordered as in :meth:`stations`; read once (a later store cannot
        come first), and only when a message without a store and one with it share a seq."""
        key = (site, station)
        if key not in self._first_store:
            p = self.p
            rows = self.conn.execute(
                f"SELECT store, MIN(received_at), MIN(created) FROM {NUMBERED} WHERE site = {p} AND station = {p} "
                "AND store IS NOT NULL GROUP BY store", (site, station)).fetchall()
            if not rows:
                return None
            self._first_store[key] = min(rows, key=lambda r: _heard_order(*r))[0]
        return self._first_store[key]

    def reject(self, topic: str, reason: str, payload: bytes) -> None:
        """Keep what could not be read (first 64 KiB) with the reason; never raises for bad input.
        Undecodable bytes and NUL (which PostgreSQL's text cannot hold) are kept as U+FFFD."""
        p = self.p
        text = payload[:65536].decode("utf-8", "replace").replace("\x00", "\ufffd")
        self.conn.execute(f"INSERT INTO central_rejects (received_at, topic, reason, payload) VALUES ({p}, {p}, {p}, {p})",
                          (_now(), topic, reason, text))
        self.conn.commit()

    # -- reads -------------------------------------------------------------------------------------
    def stations(self) -> list[dict[str, Any]]:
        """Per station: counts per kind, duplicates dropped, seq gaps (with the first missing ranges),
        latest status. Stations are sorted by site and id.

        A station's seq numbers are counted per store (``stores``, oldest first): a station given a new
        store numbers from 1 again, and its gaps are its own.  Messages of agents from before the
        envelope named its store count in the station's first store, which an upgraded agent goes on
        numbering.  ``max_seq``, ``missing_seq`` are those of the station's current store (the one its
        latest status names, else the one heard from first most recently); ``seq_gaps`` and
        ``seq_reused`` add up every store's."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for site, station, dups, statuses, last_status, last_status_at, last_received_at in self.conn.execute(
                "SELECT site, station, duplicates_dropped, status_received, last_status, last_status_at, "
                "last_received_at FROM central_stations ORDER BY site, station").fetchall():
            status = _json(last_status)
            if status is not None:
                status["received_at"] = last_status_at
            out[(site, station)] = {
                "site": site, "station": station,
                "received": {k: 0 for k in KINDS} | {"status": statuses},
                "duplicates_dropped": dups, "seq_gaps": 0, "max_seq": 0, "missing_seq": [], "seq_reused": 0,
                "stores": [], "last_received_at": last_received_at, "last_status": status,
            }
        for site, station, kind, n in self.conn.execute(
                "SELECT site, station, kind, COUNT(*) FROM central_events GROUP BY site, station, kind").fetchall():
            out[(site, station)]["received"][kind] = n
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for site, station, store, max_seq, distinct, since, last, first_created in self.conn.execute(
                "SELECT site, station, store, MAX(seq), COUNT(DISTINCT seq), MIN(received_at), MAX(received_at), "
                f"MIN(created) FROM {NUMBERED} GROUP BY site, station, store").fetchall():
            groups.setdefault((site, station), []).append({
                "store": store, "since": since, "last_received_at": last, "max_seq": int(max_seq),
                "distinct": int(distinct), "first_created": first_created})
        reused: dict[tuple[str, str, Optional[str]], int] = {}
        for site, station, store, n in self.conn.execute(  # one store numbering two events alike (a restore)
                f"SELECT site, station, store, COUNT(*) FROM (SELECT site, station, store, seq FROM {NUMBERED} "
                "GROUP BY site, station, store, seq HAVING COUNT(DISTINCT event_id) > 1) r "
                "GROUP BY site, station, store").fetchall():
            reused[(site, station, store)] = int(n)
        for (site, station), found in groups.items():
            entry = out[(site, station)]
            found.sort(key=lambda g: _heard_order(g["store"], g["since"], g["first_created"]))
            legacy = next((g for g in found if g["store"] is None), None)
            named = [g for g in found if g["store"] is not None]
            if legacy is not None and named:  # an upgraded agent: its earlier messages are its first store's
                first = named[0]
                first["with_legacy"] = True
                first["since"] = min(first["since"], legacy["since"])
                first["max_seq"] = max(first["max_seq"], legacy["max_seq"])
                first["distinct"], both_reused = self._merged(site, station, first["store"])
                reused[(site, station, first["store"])] = both_reused
                found = named
            for g in found:
                series = {"store": g["store"], "since": g["since"], "last_received_at": g["last_received_at"],
                          "max_seq": g["max_seq"], "seq_gaps": g["max_seq"] - g["distinct"], "missing_seq": [],
                          "seq_reused": reused.get((site, station, g["store"]), 0)}
                if series["seq_gaps"]:
                    series["missing_seq"] = self._missing(site, station, g["store"], g.get("with_legacy", False))
                entry["stores"].append(series)
        for entry in out.values():
            _current_store(entry)
        return list(out.values())

    def _series(self, store: Optional[str], with_legacy: bool) -> tuple[str, tuple]:
        """The WHERE condition (after site and station) selecting one store's events."""
        if store is None:
            return "store IS NULL", ()
        if with_legacy:
            return f"(store = {self.p} OR store IS NULL)", (store,)
        return f"store = {self.p}", (store,)

    def _merged(self, site: str, station: str, store: str) -> tuple[int, int]:
        """Distinct seqs and seqs numbering two events, over a first store and the messages before it."""
        p = self.p
        where, args = self._series(store, True)
        (distinct,) = self.conn.execute(f"SELECT COUNT(DISTINCT seq) FROM {NUMBERED} WHERE site = {p} AND "
                                        f"station = {p} AND {where}", (site, station, *args)).fetchone()
        (twice,) = self.conn.execute(f"SELECT COUNT(*) FROM (SELECT seq FROM {NUMBERED} WHERE site = {p} AND "
                                     f"station = {p} AND {where} GROUP BY seq "
                                     "HAVING COUNT(DISTINCT event_id) > 1) r",
                                     (site, station, *args)).fetchone()
        return int(distinct), int(twice)

    def _missing(self, site: str, station: str, store: Optional[str], with_legacy: bool) -> list[list[int]]:
        """The first missing seq ranges ``[from, to]`` of one station's store."""
        p = self.p
        where, args = self._series(store, with_legacy)
        rows = self.conn.execute(
            f"SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) AS prev "
            f"FROM (SELECT DISTINCT seq FROM {NUMBERED} WHERE site = {p} AND station = {p} AND {where}) s) t "
            f"WHERE seq - prev > 1 ORDER BY seq LIMIT {MISSING_RANGES_SHOWN}", (site, station, *args)).fetchall()
        return [[int(a), int(b)] for a, b in rows]


def _heard_order(store: Optional[str], since: str, first_created: str) -> tuple[str, str, str]:
    """The order of a station's stores: as first heard from; a tie (one batch) by the agent's own times."""
    return since, first_created, store or ""


def _current_store(entry: dict[str, Any]) -> None:
    """The station's figures from its stores: the current one's ``max_seq`` and ``missing_seq`` (with
    a missing tail, see :func:`_missing_tail`), every store's gaps and reused numbers added up."""
    stores = entry["stores"]
    status = entry["last_status"] or {}
    named = status.get("store")
    current = next((s for s in stores if s["store"] == named), None) if named else (stores[-1] if stores else None)
    if current is None and named and len(stores) == 1 and stores[0]["store"] is None:
        current = stores[0]  # an upgraded agent names its store before any event of it arrives
        current["store"] = named
    if current is None and status.get("seq"):  # a status counting events of which none came
        current = {"store": named, "since": None, "last_received_at": None, "max_seq": 0, "seq_gaps": 0,
                   "missing_seq": [], "seq_reused": 0}
        stores.append(current)
    if current is not None:
        _missing_tail(current, status)
        entry["max_seq"], entry["missing_seq"] = current["max_seq"], current["missing_seq"]
    entry["seq_gaps"] = sum(s["seq_gaps"] for s in stores)
    entry["seq_reused"] = sum(s["seq_reused"] for s in stores)


def _missing_tail(series: dict[str, Any], status: dict[str, Any]) -> None:
    """Count as missing what the station's last status says the broker acknowledged but never came:
    with nothing pending or in flight at the station, every seq up to the status's was PUBACKed, so
    a broker that dropped messages (a subscriber queue limit, a lost session) leaves a tail here."""
    body = status.get("body") or {}
    announced, received = status.get("seq"), series["max_seq"] or 0
    if (isinstance(announced, int) and announced > received and body.get("state") == "online"
            and body.get("pending") == 0 and body.get("inflight") == 0):
        series["seq_gaps"] += announced - received
        series["missing_seq"] = (series["missing_seq"] + [[received + 1, announced]])[:MISSING_RANGES_SHOWN]


def _refused_value(exc: Exception) -> bool:
    """A value the database cannot hold (e.g. a NUL character in PostgreSQL's jsonb), as opposed to a
    connection or disk failure."""
    if isinstance(exc, sqlite3.DataError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.DataError)


def _json(value: Any) -> Optional[dict[str, Any]]:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


def _wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL. Connections converting a new file at once get "database is locked" without
    the busy handler being called, so this one waits its turn (receivers starting together)."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def safe_database(database: str) -> str:
    """The database as it may be logged or shown: a URL without its credentials."""
    if "://" in database and "@" in database:
        scheme, rest = database.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return database
