"""Helpers shared by subcommands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

from agent import config as config_mod


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="CONFIG", help="TOML configuration (default: embedded defaults)")


def load_config(args: argparse.Namespace) -> config_mod.Config:
    try:
        return config_mod.load(getattr(args, "config", None))
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        raise SystemExit(2)
    except OSError as exc:
        print(f"config: {exc}", file=sys.stderr)
        raise SystemExit(2)


def store_present(path: Path) -> bool:
    """Whether the store exists; if not, say so on stderr, so that "nothing stored" is not mistaken
    for an empty store (a command run from another directory, or with another configuration)."""
    if path.exists():
        return True
    print(f"(no store at {path.absolute()}: the agent creates it when it first runs; "
          "for another installation give -c CONFIG)", file=sys.stderr)
    return False


def iter_files(paths: list[str]) -> Iterator[Path]:
    """Files named, and every file below directories named, in a stable order."""
    for name in paths:
        p = Path(name)
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file())
        else:
            yield p
