"""SIGKILL soak: the sending agent killed at random moments, N times; nothing committed may be lost.

A throwaway Mosquitto and an in-process central receiver; the sender is
``simulator/outbox_feeder.py`` (the real uplink, committing rows one by one). Each iteration
kills it with SIGKILL after a random 0.2-1.6 s (during start-up, enqueue, drain or idle).
At the end one run drains the rest, and the script checks that every row that was ever
committed reached the receiver exactly once after dedupe, with no seq gaps, and that no
kill caused more duplicates than the in-flight window.

    python bench/kill_loop.py [--iterations 1000] [--seed N]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent import config as config_mod  # noqa: E402
from agent.central.receiver import Receiver  # noqa: E402
from agent.central.store import CentralStore  # noqa: E402
from agent.store import connect  # noqa: E402
from tests.uplink.broker import Mosquitto  # noqa: E402
from tests.uplink.crash import kill_loop, write_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        broker = Mosquitto(tmp_path / "broker").start()
        config = write_config(tmp_path, broker.port)
        cfg = config_mod.load(config)
        receiver = Receiver(cfg).start()
        receiver.connected.wait(10)
        view = CentralStore.open(cfg.central.database)

        def duplicates() -> int:
            return sum(s["duplicates_dropped"] for s in view.stations())

        started = time.monotonic()
        try:
            result = kill_loop(config, args.iterations, random.Random(args.seed), duplicates)
            time.sleep(1.0)
            db = connect(cfg.store.path)
            rows = dict(db.execute("SELECT event_id, state FROM outbox").fetchall())
            db.conn.close()
            ids = [r[0] for r in view.conn.execute("SELECT event_id FROM central_events").fetchall()]
            station = view.stations()[0]
        finally:
            receiver.stop()
            broker.stop()
        lost = result["acknowledged"] - set(ids)
        undelivered = [e for e, state in rows.items() if state != "delivered"]
        per_kill = result["per_kill"]
        print(f"seed {args.seed}: {args.iterations} kills in {time.monotonic() - started:.0f} s")
        print(f"rows committed {len(rows)} (acknowledged before a kill: {len(result['acknowledged'])}), "
              f"at central {len(ids)} unique, lost {len(lost)}, undelivered {len(undelivered)}, "
              f"seq gaps {station['seq_gaps']}")
        print(f"duplicates at the receiver: total {sum(per_kill)}, per kill max {max(per_kill)} "
              f"mean {statistics.mean(per_kill):.2f} (window {cfg.mqtt.window}); after dedupe 0")
        ok = (not lost and not undelivered and len(ids) == len(rows) and station["seq_gaps"] == 0
              and max(per_kill) <= cfg.mqtt.window)
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
