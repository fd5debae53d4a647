"""``alara-edge ack ALERT_ID --by ID --reason TEXT``: acknowledge a dose alert."""
from __future__ import annotations

import argparse
import sys

from agent.checks.alerts import AlreadyAcknowledged, UnknownAlert, acknowledge
from agent.commands.common import add_config_argument, load_config
from agent.config import Config
from agent.store import Store, StoreBusy, StoreError

HELP = "acknowledge a dose alert: who, and why (a reason is required for critical alerts)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("alert_id", metavar="ALERT_ID")
    parser.add_argument("--by", required=True, metavar="ID", help="who acknowledges (staff id or initials)")
    parser.add_argument("--reason", default=None, metavar="TEXT", help="why (required for critical alerts)")
    parser.add_argument("--note", default=None, metavar="TEXT", help="anything else worth recording")
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if not cfg.store.path.exists():
        print(f"ack: no store at {cfg.store.path}", file=sys.stderr)
        return 1
    try:
        store = Store.open(cfg.store.path)
    except StoreBusy:  # the running agent is the store's writer: hand it the acknowledgement
        return _through_the_agent(cfg, args)
    except StoreError as exc:
        print(f"ack: {exc}", file=sys.stderr)
        return 1
    try:
        with store.transaction() as tx:
            alert = acknowledge(tx, args.alert_id, args.by, args.reason, args.note)
    except (UnknownAlert, AlreadyAcknowledged, ValueError) as exc:
        print(f"ack: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"ack: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"acknowledged {alert.id} ({alert.severity} {alert.kind}) by {alert.ack['by']} at {alert.ack['at']}")
    return 0


def _through_the_agent(cfg: Config, args: argparse.Namespace) -> int:
    """Acknowledge through the running agent's console API (on loopback, with the configured token)."""
    from agent.console.client import ConsoleClient, ConsoleRefused, ConsoleUnavailable

    try:
        alert = ConsoleClient(cfg.console).acknowledge(args.alert_id, args.by, args.reason, args.note)
    except ConsoleRefused as exc:
        print(f"ack: {exc}", file=sys.stderr)
        return 1
    except ConsoleUnavailable as exc:
        print(f"ack: the agent is running and holds the store, but {exc}", file=sys.stderr)
        return 1
    print(f"acknowledged {alert['id']} ({alert['severity']} {alert['kind']}) by {alert['ack']['by']} "
          f"at {alert['ack']['at']} (through the running agent)")
    return 0
