"""The outbox: everything that leaves the box is first a row here, written in the same
transaction as the data it describes.

``seq`` is the per-station sequence number, strictly increasing and never reused: it is the
row id, which SQLite assigns as the largest so far plus one, and pruning never deletes the
newest row, so an old number cannot come back.  (The ``counters`` row ``outbox_seq`` of
migration 1 is no longer written: one page less per commit on an SD card.)  ``event_id`` is
deterministic from the data's identity, so enqueueing the same thing twice is a no-op.  The uplink (a sink)
moves rows pending → inflight → delivered (or dead on a failure reason code); ``inflight``
means "published at least once, PUBACK not yet recorded" and goes back to ``pending`` whenever
a connection is (re)made.  A station given a new store (reinstalled, its card replaced) numbers
from 1 again; its messages say so with the store's id (:func:`store_id`).  Nothing here deletes
a row that was not delivered.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import sqlite_utils

KINDS = ("report", "alert", "ack", "reading", "status")


def event_id(kind: str, *identity: Any) -> str:
    """A stable id from the data's identity, e.g. ``event_id("report", sop_instance_uid)``."""
    h = hashlib.sha256("\x1f".join([kind, *map(str, identity)]).encode()).hexdigest()
    return f"{kind}-{h[:32]}"


def utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def enqueue(tx: sqlite_utils.Database, kind: str, event_id: str, body: dict[str, Any]) -> Optional[int]:
    """Queue ``body`` (no PHI) for the central site; returns the new seq, or None if already queued."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    cursor = tx.execute(
        "INSERT INTO outbox (event_id, kind, created_at, body) VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        [event_id, kind, utcnow(), json.dumps(body, separators=(",", ":"), sort_keys=True)],
    )
    return cursor.lastrowid if cursor.rowcount == 1 else None


def store_id(db: sqlite_utils.Database) -> str:
    """This store's random id (32 hex digits): the series its ``seq`` numbers belong to."""
    return db.execute("SELECT id FROM store_identity").fetchone()[0]


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Rows per state (pending, inflight, delivered, dead)."""
    return {state: n for state, n in db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()}


@dataclass(frozen=True)
class Row:
    """One message waiting to leave: what the uplink needs to publish it."""

    seq: int
    event_id: str
    kind: str
    created_at: str
    body: str  # JSON text, sent verbatim


def reset_inflight(tx: sqlite_utils.Database) -> int:
    """Rows published but not acknowledged go back to pending (on start and on every reconnect)."""
    return tx.execute("UPDATE outbox SET state = 'pending' WHERE state = 'inflight'").rowcount


def next_pending(db: sqlite_utils.Database, after_seq: int, limit: int) -> list[Row]:
    """Pending rows with ``seq > after_seq``, oldest first."""
    return [Row(*r) for r in db.execute(
        "SELECT seq, event_id, kind, created_at, body FROM outbox WHERE state = 'pending' AND seq > ? "
        "ORDER BY seq LIMIT ?", [after_seq, limit]).fetchall()]


def settle(tx: sqlite_utils.Database, *, sent: Iterable[int] = (), delivered: Iterable[int] = (),
           dead: Iterable[tuple[int, str]] = (), retry: Iterable[tuple[int, str]] = (),
           at: Optional[str] = None) -> None:
    """Record what happened since the last call, in the caller's transaction.

    ``sent``: published (attempts + 1; inflight unless settled below); ``delivered``: PUBACK
    success; ``dead``: PUBACK failure code, with the reason (never retried automatically);
    ``retry``: back to pending, with the reason (e.g. no subscriber yet).
    """
    at = at or utcnow()
    # One statement per kind of change, the seqs as one JSON array: a commit of many PUBACKs is a few
    # statements, not two per row (each statement gives up and takes back the interpreter lock, which
    # the network loop is using meanwhile): drains of 100,000 at window 100, 12.6k against 9.8k msg/s.
    conn = tx.conn
    sent, delivered = list(sent), list(delivered)
    if sent:
        conn.execute("UPDATE outbox SET state = 'inflight', attempts = attempts + 1 "
                     "WHERE seq IN (SELECT value FROM json_each(?)) AND state = 'pending'", [json.dumps(sent)])
    if delivered:
        conn.execute("UPDATE outbox SET state = 'delivered', delivered_at = ?, last_error = NULL "
                     "WHERE seq IN (SELECT value FROM json_each(?)) AND state IN ('pending', 'inflight')",
                     [at, json.dumps(delivered)])
    conn.executemany("UPDATE outbox SET state = 'dead', last_error = ? WHERE seq = ? AND state IN ('pending', 'inflight')",
                     [(err, s) for s, err in dead])
    conn.executemany("UPDATE outbox SET state = 'pending', last_error = ? WHERE seq = ? AND state IN ('pending', 'inflight')",
                     [(err, s) for s, err in retry])


def requeue(tx: sqlite_utils.Database, *, state: str = "dead", first_seq: int | None = None,
            last_seq: int | None = None) -> int:
    """Put rows in ``state`` (dead, or delivered for a re-send) back to pending; returns how many."""
    if state not in ("dead", "delivered"):
        raise ValueError("only dead or delivered rows can be queued again")
    sql = "UPDATE outbox SET state = 'pending', delivered_at = NULL WHERE state = ?"
    args: list[Any] = [state]
    if first_seq is not None:
        sql += " AND seq >= ?"
        args.append(first_seq)
    if last_seq is not None:
        sql += " AND seq <= ?"
        args.append(last_seq)
    return tx.execute(sql, args).rowcount


def prune_delivered(tx: sqlite_utils.Database, delivered_before: str) -> int:
    """Delete rows delivered before ``delivered_before`` (ISO time); never a row that was not
    delivered, and never the newest row (it carries the seq high-water mark)."""
    return tx.execute("DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < ? "
                      "AND seq < (SELECT MAX(seq) FROM outbox)", [delivered_before]).rowcount


def high_water(db: sqlite_utils.Database) -> int:
    """The last seq ever assigned (0 if none)."""
    return db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]


def oldest_pending(db: sqlite_utils.Database) -> Optional[str]:
    """``created_at`` of the oldest row not yet delivered (None if the backlog is empty); two index lookups."""
    seqs = [db.execute("SELECT MIN(seq) FROM outbox WHERE state = ?", [state]).fetchone()[0]
            for state in ("pending", "inflight")]
    seqs = [s for s in seqs if s is not None]
    if not seqs:
        return None
    return db.execute("SELECT created_at FROM outbox WHERE seq = ?", [min(seqs)]).fetchone()[0]
