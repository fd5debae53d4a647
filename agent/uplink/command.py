"""``alara-edge outbox``: look at the outbox, and queue dead letters (or a delivered range) again.

``status`` only reads.  ``requeue`` writes to the store, so run it while the agent is stopped
(the store has one writer by design); the agent sends the rows on its next start.
"""
from __future__ import annotations

import argparse
import json
import sys

from agent.commands.common import add_config_argument, load_config, read_store
from agent.store import Store, StoreBusy, outbox

HELP = "show the outbox backlog and dead letters; queue dead letters or a seq range again (agent stopped)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = sub.add_parser("status", help="counts per state, oldest unsent row, dead letters")
    status.add_argument("--json", action="store_true")
    requeue = sub.add_parser("requeue", help="dead letters (default) or delivered rows in --seq back to pending")
    requeue.add_argument("--seq", metavar="FROM-TO", help="re-send delivered rows in this seq range (e.g. 120-135)")
    for action in (status, requeue):  # -c after the action too, as every other command takes it anywhere
        action.add_argument("-c", "--config", metavar="CONFIG", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if args.action == "status":
        return _status(cfg.store.path, args.json)
    return _requeue(cfg.store.path, args.seq)


def _status(path, as_json: bool) -> int:
    db = read_store(path)
    if db is None:
        return 1
    try:
        out = {
            "counts": {state: 0 for state in ("pending", "inflight", "delivered", "dead")} | outbox.counts(db),
            "last_seq": outbox.high_water(db),
            "oldest_pending_created": outbox.oldest_pending(db),
            "dead": list(db.query("SELECT seq, kind, event_id, created_at, attempts, last_error FROM outbox "
                                  "WHERE state = 'dead' ORDER BY seq LIMIT 100")),
        }
    finally:
        db.conn.close()
    if as_json:
        print(json.dumps(out, indent=2))
        return 0
    print("  ".join(f"{k}={v}" for k, v in out["counts"].items()), f"last_seq={out['last_seq']}",
          f"oldest_pending={out['oldest_pending_created'] or '-'}")
    for row in out["dead"]:
        print(f"dead seq={row['seq']} kind={row['kind']} event_id={row['event_id']} reason={row['last_error']}")
    return 0


def _requeue(path, seq_range: str | None) -> int:
    try:
        store = Store.open(path)
    except StoreBusy as exc:
        print(f"outbox: {exc}; stop it first", file=sys.stderr)
        return 1
    try:
        with store.transaction() as tx:
            if seq_range:
                first, _, last = seq_range.partition("-")
                try:
                    first_seq, last_seq = int(first), int(last or first)
                    if not 1 <= first_seq <= last_seq:
                        raise ValueError(seq_range)
                    n = outbox.requeue(tx, state="delivered", first_seq=first_seq, last_seq=last_seq)
                except ValueError:
                    print("outbox: --seq takes FROM-TO, the lower first, e.g. 120-135", file=sys.stderr)
                    return 2
            else:
                n = outbox.requeue(tx, state="dead")
    finally:
        store.close()
    print(f"{n} row(s) queued again; they are sent when the agent runs")
    return 0
