"""``alara-edge central -c CONFIG``: run the central receiver in the foreground."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from agent import logs
from agent.commands.common import add_config_argument, load_config

from .receiver import Receiver
from .store import CentralStoreError

HELP = "run the central receiver: store every station's messages once (SQLite or PostgreSQL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    logs.configure(cfg.logging.level, fmt=cfg.logging.format)
    try:
        receiver = Receiver(cfg)
    except CentralStoreError as exc:
        print(f"central: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    receiver.run(stop)
    return 0
