"""``alara-edge stats``: local dose statistics per station × exam × patient group."""
from __future__ import annotations

import argparse
import json
import sys

from agent.checks.rules import RulesError, load_rules
from agent.checks.stats import compute
from agent.commands.common import add_config_argument, load_config, read_store

PHANTOMS = {"head": "16-cm phantom", "body": "32-cm phantom"}
HELP = "local dose statistics per station, exam and patient group: n, median, 75th percentile, proposed local DRL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        rules = load_rules(cfg.checks)
    except RulesError as exc:
        print(f"stats: {exc}", file=sys.stderr)
        return 2
    db = read_store(cfg.store.path)
    rows = compute(db, rules) if db is not None else []
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no examinations stored")
        return 0
    print(f"{'station':12} {'exam':30} {'patient group':22} {'quantity':36} {'n':>5} {'median':>10} {'p75':>10} "
          f"{'proposed':>10}  unit     DRLs")
    for r in rows:
        proposed = f"{r['proposed_local_drl']:.4g}" if r["proposed_local_drl"] is not None else "-"
        drls = ", ".join(f"{d['value']:.4g} ({d['rule']})" for d in r["drls"]) or "-"
        quantity = f"{r['quantity']} {r['scope'].replace('per_', 'per ')}"
        if r["phantom"]:
            quantity += f", {PHANTOMS[r['phantom']]}"
        print(f"{r['station'][:12]:12} {r['exam'][:30]:30} {r['patient_group'][:22]:22} {quantity:36} {r['n']:>5} "
              f"{r['median']:>10.4g} {r['p75']:>10.4g} {proposed:>10}  {r['unit']:8} {drls}")
    print(f"\nproposed = 75th percentile, shown from n >= {rules.stats_min_n}; for the medical physicist to review "
          "(docs/dose-checks.md, 'Setting local DRLs').")
    return 0
