"""``alara-edge check-config CONFIG``: validate a configuration file (or a serial device profile)."""
from __future__ import annotations

import argparse
import sys

from agent import config

HELP = ("validate a TOML configuration (or a serial device profile, docs/drivers.md); "
        "prints every problem with its key and line")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG")


def run(args: argparse.Namespace) -> int:
    from drivers.generic import check_profile_file, is_profile_file

    check = check_profile_file if is_profile_file(args.config) else config.check_file
    problems = check(args.config)
    for problem in problems:
        print(f"{args.config}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.config}: ok")
    return 0
