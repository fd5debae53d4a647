"""Outbox state transitions on a real store: what is kept, what is sent again, what is never deleted."""
from __future__ import annotations

from agent.store import outbox


def _fill(store, n: int, kind: str = "alert") -> list[int]:
    seqs = []
    for i in range(n):
        with store.transaction() as tx:
            seqs.append(outbox.enqueue(tx, kind, outbox.event_id(kind, i), {"n": i}))
    return seqs


def _states(store) -> dict[int, str]:
    return dict(store.db.execute("SELECT seq, state FROM outbox ORDER BY seq").fetchall())


def test_same_identity_is_queued_once_and_seq_strictly_increases(store):
    seqs = _fill(store, 5)
    with store.transaction() as tx:
        assert outbox.enqueue(tx, "alert", outbox.event_id("alert", 3), {"n": 3}) is None
    assert seqs == [1, 2, 3, 4, 5]
    assert outbox.high_water(store.db) == 5


def test_settle_moves_rows_and_counts_attempts(store):
    _fill(store, 5)
    with store.transaction() as tx:
        outbox.settle(tx, sent=[1, 2, 3, 4, 5], delivered=[1, 2], dead=[(3, "0x87 Not authorized")],
                      retry=[(4, "0x10 No matching subscribers")])
    assert _states(store) == {1: "delivered", 2: "delivered", 3: "dead", 4: "pending", 5: "inflight"}
    row = dict(zip(("attempts", "last_error"), store.db.execute(
        "SELECT attempts, last_error FROM outbox WHERE seq = 3").fetchone()))
    assert row == {"attempts": 1, "last_error": "0x87 Not authorized"}
    # a PUBACK arriving late for a dead row does not resurrect it
    with store.transaction() as tx:
        outbox.settle(tx, delivered=[3])
    assert _states(store)[3] == "dead"


def test_inflight_goes_back_to_pending_and_is_offered_again_in_order(store):
    _fill(store, 4)
    with store.transaction() as tx:
        outbox.settle(tx, sent=[1, 2, 3], delivered=[2])
    with store.transaction() as tx:
        assert outbox.reset_inflight(tx) == 2
    assert [r.seq for r in outbox.next_pending(store.db, 0, 10)] == [1, 3, 4]
    assert [r.seq for r in outbox.next_pending(store.db, 3, 10)] == [4]


def test_requeue_dead_and_resend_a_delivered_range(store):
    _fill(store, 6)
    with store.transaction() as tx:
        outbox.settle(tx, sent=range(1, 7), delivered=[1, 2, 3, 4], dead=[(5, "0x87"), (6, "0x87")])
    with store.transaction() as tx:
        assert outbox.requeue(tx) == 2
        assert outbox.requeue(tx, state="delivered", first_seq=2, last_seq=3) == 2
    assert _states(store) == {1: "delivered", 2: "pending", 3: "pending", 4: "delivered", 5: "pending", 6: "pending"}


def test_prune_deletes_only_rows_delivered_before_the_cutoff(store):
    _fill(store, 4)
    with store.transaction() as tx:
        outbox.settle(tx, sent=[1, 2, 3], delivered=[1], at="2020-01-01T00:00:00Z")
        outbox.settle(tx, delivered=[2], at="2030-01-01T00:00:00Z")
        outbox.settle(tx, dead=[(3, "0x87")])
    with store.transaction() as tx:
        assert outbox.prune_delivered(tx, "2025-01-01T00:00:00Z") == 1
    assert _states(store) == {2: "delivered", 3: "dead", 4: "pending"}
    with store.transaction() as tx:  # seq numbers are never reused after pruning
        assert outbox.enqueue(tx, "alert", outbox.event_id("alert", "new"), {}) == 5


def test_the_newest_row_survives_pruning_so_seq_never_goes_back(store):
    _fill(store, 3)
    with store.transaction() as tx:
        outbox.settle(tx, sent=[1, 2, 3], delivered=[1, 2, 3], at="2020-01-01T00:00:00Z")
        assert outbox.prune_delivered(tx, "2025-01-01T00:00:00Z") == 2
    assert _states(store) == {3: "delivered"} and outbox.high_water(store.db) == 3
    with store.transaction() as tx:
        assert outbox.enqueue(tx, "alert", outbox.event_id("alert", "later"), {}) == 4
