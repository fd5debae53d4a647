"""``alara-edge``: the one command-line entry point.

Each subcommand lives in the module of the stage it belongs to, as a module with
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.  This file only lists them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    "run": "agent.daemon",
    "check-config": "agent.commands.check_config",
    "extract": "agent.commands.extract",
    "import": "agent.commands.import_files",
    "studies": "agent.commands.studies",
    "alerts": "agent.checks.commands.alerts",
    "ack": "agent.checks.commands.ack",
    "stats": "agent.checks.commands.stats",
    "staff": "agent.readings.staff",
    "outbox": "agent.uplink.command",
    "central": "agent.central.command",
    "central-report": "agent.central.report",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alara-edge", description="Radiation-dose edge agent.")
    parser.add_argument("--version", action="version", version=f"alara-edge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `alara-edge studies | head`
        return 0
    except PermissionError as exc:  # the store (or a file beside it) is another user's: one line, not a traceback
        from agent.commands.common import AS_AGENT_USER

        print(f"{args.command}: permission denied: {exc.filename or exc}; {AS_AGENT_USER}", file=sys.stderr)
        return 1


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("alara-edge")
    except Exception:
        return "dev"


if __name__ == "__main__":
    sys.exit(main())
