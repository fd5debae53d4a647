"""``alara-edge studies``: stored studies with their dose totals, and receipts that failed."""
from __future__ import annotations

import argparse
import json

from agent.commands.common import add_config_argument, load_config, local_time, positive, read_store
from agent.store.inbox import MAX_ATTEMPTS, count_pending
from agent.store.reports import count_failed, failed_receipts, list_studies

HELP = "list stored studies with their dose totals (and received objects that could not be read)"

COLUMNS = [("ct_dlp_total_mGycm", "DLP mGy·cm", 1), ("dap_total_Gym2", "DAP Gy·cm²", 1e4),
           ("dose_rp_total_Gy", "Ka,r mGy", 1e3), ("fluoro_time_total_s", "fluoro s", 1),
           ("administered_activity_MBq", "activity MBq", 1)]
AGD_SIDES = {"left": "AGD L mGy", "right": "AGD R mGy", "both": "AGD mGy"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--limit", type=positive, default=None, help="newest N studies only")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    db = read_store(cfg.store.path)
    studies, failed = (list_studies(db, args.limit), failed_receipts(db)) if db is not None else ([], [])
    failed_count = count_failed(db) if db is not None else 0
    waiting, held = count_pending(cfg.store.path)  # received and durable, not yet processed
    if args.json:
        print(json.dumps({"studies": studies, "failed": failed, "failed_count": failed_count, "waiting": waiting, "held": held}, indent=2,
                         ensure_ascii=False))
        return 0
    if not studies:
        print("no studies stored")
    for s in studies:
        t = s["totals"]
        doses = "  ".join([f"{label} {t[key] * factor:.6g}" for key, label, factor in COLUMNS if t.get(key) is not None]
                          + [f"{AGD_SIDES.get(side, 'AGD ' + side)} {value:.6g}"
                             for side, value in (t.get("agd_total_mGy") or {}).items()])
        print(f"{local_time(s['last_received'], cfg.station.timezone)}  {s.get('modality') or '?':3} {s.get('accession_number') or '-':12} "
              f"{(s.get('description') or '')[:28]:28} reports {s['report_count']} events {t['events']}  {doses}")
    if failed:
        newest = f" (the newest {len(failed)})" if failed_count > len(failed) else ""
        print(f"\n{failed_count} received object(s) could not be stored as reports (kept for inspection){newest}:")
        for f in failed:
            print(f"{local_time(f['received_at'], cfg.station.timezone)}  {f['status']:8} {f['path']}\n    {f['reason']}")
    if waiting - held:
        print(f"\n{waiting - held} received object(s) waiting to be processed (the agent processes them when it runs; "
              "if it is running and they stay, its log says why: processing_stalled)")
    if held:
        print(f"\n{held} received object(s) held back: the agent died {MAX_ATTEMPTS} times while processing each; "
              "when it runs, it keeps them in the failed folder instead of processing them again")
    return 0
