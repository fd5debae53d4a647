"""``python -m simulator.serial DRIVER --link PATH [--scenario FILE]``: a simulated dosimeter on a pty.

Prints one JSON line ``{"event": "ready", "pty": ..., "link": ...}`` when the link exists, then one per
fault, and plays until interrupted (Ctrl-C or SIGTERM), removing the link on the way out.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import DEVICES, from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.serial", description=__doc__.splitlines()[0])
    parser.add_argument("driver", choices=sorted(DEVICES))
    parser.add_argument("--link", required=True, help="symlink to create for the pty (like /dev/serial/by-id/...)")
    parser.add_argument("--scenario", help="scenario TOML (default: simulator/scenarios/DRIVER.toml)")
    args = parser.parse_args(argv)
    try:
        sim = from_args(args.driver, args.link, args.scenario)
    except (OSError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sim.start()
    print(json.dumps({"event": "ready", "driver": args.driver, "pty": sim.link.slave_name, "link": args.link}),
          flush=True)
    reported = 0
    try:
        while not done.wait(0.2):
            for t, what in sim.events[reported:]:
                print(json.dumps({"event": "fault", "t": t, "what": what}), flush=True)
            reported = len(sim.events)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
