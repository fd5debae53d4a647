"""A stand-in agent for crash tests: commits outbox rows one by one while the uplink drains them.

    python -m simulator.outbox_feeder -c CONFIG --tag run3 --count 50 --interval 0.01

It prints ``ready`` once the uplink runs.  Each row is committed in its own transaction, then
``committed <seq> <event_id>`` is printed
(the analogue of answering a C-STORE: after that line the row must reach the central site).
When all rows are committed it waits until the outbox is drained, prints ``drained`` and
exits; ``--count 0`` only drains.  Logs go to stderr.
"""
from __future__ import annotations

import argparse
import sys
import time

from agent import config as config_mod
from agent import logs
from agent.bus import Bus
from agent.store import Store, outbox
from agent.uplink import Uplink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--tag", required=True, help="makes this run's event ids unique")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between commits")
    parser.add_argument("--kind", default="reading", choices=outbox.KINDS[:4])
    parser.add_argument("--timeout", type=float, default=120.0, help="give up draining after this long")
    args = parser.parse_args(argv)

    cfg = config_mod.load(args.config)
    logs.configure(cfg.logging.level, stream=sys.stderr)
    store = Store.open(cfg.store.path)
    bus = Bus()
    uplink = Uplink(cfg, store, bus)
    uplink.start()
    print("ready", flush=True)
    for i in range(args.count):
        eid = outbox.event_id(args.kind, args.tag, i)
        with store.transaction() as tx:
            seq = outbox.enqueue(tx, args.kind, eid, {"run": args.tag, "n": i, "dose_mGy": round(0.1 * i + 0.001, 3)})
        bus.publish("outbox", None)
        print(f"committed {seq} {eid}", flush=True)
        time.sleep(args.interval)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        h = uplink.health()
        if h["pending"] == 0 and h["inflight"] == 0:
            break
        time.sleep(0.02)
    else:
        uplink.stop()
        print("timeout", flush=True)
        return 1
    uplink.stop()
    store.close()
    print("drained", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
