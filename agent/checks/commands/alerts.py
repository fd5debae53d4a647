"""``alara-edge alerts``: the dose alerts raised, newest first."""
from __future__ import annotations

import argparse
import json

from agent.checks.alerts import KINDS, list_alerts
from agent.checks.units import short
from agent.commands.common import add_config_argument, load_config, local_time, positive, read_store

HELP = "list dose alerts, newest first (--json: a list of alert objects)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--open", action="store_true", help="only alerts not yet acknowledged")
    parser.add_argument("--kind", choices=KINDS, help="only alerts of this kind")
    parser.add_argument("--limit", type=positive, default=None, help="newest N alerts only")
    parser.add_argument("--follow", action="store_true",
                        help="keep running: print alerts as they are raised and acknowledged, with a bell "
                             "for new warning and critical ones (follows the running agent; docs/console.md)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if args.follow:
        from agent.console.follow import follow

        try:
            return follow(cfg)
        except KeyboardInterrupt:
            return 0
    alerts = []
    db = read_store(cfg.store.path)
    if db is not None:
        alerts = list_alerts(db, acknowledged=False if args.open else None, kind=args.kind, limit=args.limit)
    if args.json:
        print(json.dumps([a.to_dict() for a in alerts], indent=2, ensure_ascii=False))
        return 0
    if not alerts:
        print("no alerts")
    for a in alerts:
        state = f"acknowledged by {a.ack['by']}" if a.ack else "OPEN"
        observed = f"{short(a.value)} / {short(a.threshold)} {a.unit}" if a.value is not None and a.threshold is not None else ""
        print(f"{local_time(a.raised_at, cfg.station.timezone)}  {a.severity:8} {a.kind:27} {observed:24} {state}\n"
              f"    {a.id}  rule {a.rule}  exam {a.exam or '-'}\n    {a.message}\n    source: {a.source}")
    return 0
