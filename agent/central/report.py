"""``alara-edge central-report -c CONFIG [--json]``: what the central receiver holds, per station."""
from __future__ import annotations

import argparse
import json
import sys

from agent.commands.common import add_config_argument, load_config

from .store import KINDS, CentralStore, CentralStoreError

HELP = "per-station counts, duplicates dropped, seq gaps and latest status at the central receiver"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help='print {"stations": [...]} as JSON')


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        store = CentralStore.open(cfg.central.database, must_exist=True, migrate=False)  # a report writes nothing
    except CentralStoreError as exc:
        print(f"central-report: {exc}", file=sys.stderr)
        return 1
    try:
        stations = store.stations()
    finally:
        store.close()
    if args.json:
        json.dump({"stations": stations}, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    print(_table(stations))
    return 0


def _table(stations: list[dict]) -> str:
    head = ["site", "station", *KINDS, "duplicates", "seq gaps", "status", "status since"]
    rows = [head]
    for s in stations:
        status = s.get("last_status") or {}
        body = status.get("body") or {}
        rows.append([s["site"], s["station"], *(str(s["received"][k]) for k in KINDS), str(s["duplicates_dropped"]),
                     str(s["seq_gaps"]), body.get("state", "-"), status.get("received_at") or "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for s in stations:
        name = f"{s['site']}/{s['station']}"
        stores = s["stores"]
        for n, store in enumerate(stores):
            label = name if len(stores) == 1 else f"{name}, store {n + 1} of {len(stores)} ({_short(store)})"
            if store["missing_seq"]:
                ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in store["missing_seq"])
                lines.append(f"{label}: missing seq {ranges}")
            if store["seq_reused"]:
                lines.append(f"{label}: {store['seq_reused']} seq number(s) came with two different events")
        if len(stores) > 1:
            lines.append(f"{name}: started again with a new store (seq from 1) {len(stores) - 1} time(s), last on "
                         f"{stores[-1]['since'] or '-'}; each store's gaps are counted on their own")
    if not stations:
        lines.append("(nothing received yet)")
    return "\n".join(lines)


def _short(store: dict) -> str:
    if store["store"] is None:
        return f"since {store['since'] or '-'}"
    return f"id {store['store'][:8]}…, since {store['since']}"
