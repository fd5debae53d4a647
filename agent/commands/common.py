"""Helpers shared by subcommands."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
from pathlib import Path
from typing import Iterator, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlite_utils

from agent import config as config_mod
from agent.store import connect, first_unwritable


def local_time(iso: Optional[str], timezone: Optional[str] = None) -> str:
    """A UTC ISO 8601 time the agent set, as ``YYYY-MM-DD HH:MM:SS`` in the station's time zone
    (``[station] timezone``, else the machine's), as the console shows it; ``-`` if there is none."""
    if not iso:
        return "-"
    try:
        moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        local = moment.astimezone(ZoneInfo(timezone)) if timezone else moment.astimezone()
    except (ValueError, ZoneInfoNotFoundError):
        return iso
    return local.strftime("%Y-%m-%d %H:%M:%S")


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


AS_AGENT_USER = ("run the command as the user the agent runs as "
                 "(on an installed box: sudo -u alara-edge /opt/alara-edge/venv/bin/alara-edge ... "
                 "-c /etc/alara-edge/alara-edge.toml)")


def not_writable(path: Path) -> Optional[Path]:
    """The store's file or directory that this user may not write (the store is another user's), if any.
    SQLite needs both, also to read a store in WAL mode."""
    return first_unwritable(path, path.parent)


def positive(text: str) -> int:
    """A --limit: a positive number (0 or less listed everything)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("give 1 or more")
    return value


def read_store(path: Path) -> Optional[sqlite_utils.Database]:
    """The store at ``path`` for a command that only reads it; None (said on stderr) when there is none.
    A file that is not an alara-edge store (empty, another database, not SQLite) is one line on stderr
    and exit 1, not a traceback."""
    if not store_present(path):
        return None
    problem = "an empty file" if path.is_file() and path.stat().st_size == 0 else None
    if problem is None:
        try:
            db = connect(path)
            db.execute("SELECT 1 FROM reports LIMIT 1")
            return db
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
            denied = not_writable(path)
            if denied is not None:  # another user's store, not a foreign file
                print(f"{path.absolute()}: this user may not write {denied.absolute()} ({problem}); {AS_AGENT_USER}",
                      file=sys.stderr)
                raise SystemExit(1)
    print(f"{path.absolute()} is not an alara-edge store ({problem}); give -c CONFIG for the agent's", file=sys.stderr)
    raise SystemExit(1)


def iter_files(paths: list[str]) -> Iterator[Path]:
    """Files named, and every file below directories named, in a stable order.

    Symbolic links below a directory are followed (a folder linked into an export is read, each real folder
    once, so a link back up does not loop); a link that leads nowhere is listed, so that it is reported."""
    for name in paths:
        p = Path(name)
        if p.is_dir():
            yield from sorted(_walk(p))
        else:
            yield p


def _walk(top: Path) -> Iterator[Path]:
    seen: set[str] = set()
    for folder, dirs, files in os.walk(top, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for f in files:
            q = Path(folder, f)
            if q.is_file() or q.is_symlink():  # a regular file, or a dangling link (reported, not skipped)
                yield q
