"""``alara-edge alerts --follow``: alerts as they are raised and acknowledged, in a terminal.

It follows the running agent through its console's event stream (``/api/events``); when no
agent answers (stopped, or the console disabled) it reads the store read-only every few
seconds instead, and goes back to the stream when the agent is back.  Each new warning or
critical alert rings the terminal bell.  Colour is used on a terminal unless ``NO_COLOR`` is
set or ``TERM=dumb``; the text itself is plain ASCII apart from what the alert says, so it
reads the same over SSH, on a serial or text console, and in a log file.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import Any, Callable, Optional, TextIO

import sqlite_utils

from agent.checks.alerts import list_alerts
from agent.commands.common import local_time
from agent.config import Config

from .client import ConsoleClient, ConsoleRefused, ConsoleUnavailable

COLOURS = {"critical": "\033[1;37;41m", "warning": "\033[1;33m", "info": "\033[36m", "ack": "\033[32m"}
RESET = "\033[0m"
POLL_S = 2.0


class Printer:
    """Prints each alert once when raised and once when acknowledged."""

    def __init__(self, out: TextIO, colour: bool, bell: bool, timezone: Optional[str] = None):
        self.out, self.colour, self.bell = out, colour, bell
        self.timezone = timezone  # [station] timezone: times as the console shows them
        self.seen: dict[str, bool] = {}  # alert id → acknowledged

    def alert(self, a: dict[str, Any], announce: bool = True) -> None:
        known = self.seen.get(a["id"])
        self.seen[a["id"]] = bool(a.get("acknowledged"))
        if known is None and not a.get("acknowledged"):
            severity = a.get("severity") or "info"
            where = "  ".join(x for x in (a.get("station"), _acc(a), a.get("exam")) if x)
            self._line(severity, f"{local_time(a.get('raised_at'), self.timezone)}  {severity.upper():8}  {where}  {a.get('message', '')}"
                                 f"  [{a['id']}]", ring=announce and severity in ("warning", "critical"))
        elif a.get("acknowledged") and (known is None or known is False) and announce:
            self.ack(a)

    def ack(self, a: dict[str, Any]) -> None:
        self.seen[a["id"]] = True
        ack = a.get("ack") or {}
        why = f" ({ack['reason']})" if ack.get("reason") else ""
        self._line("ack", f"{local_time(ack.get('at'), self.timezone)}  ACK       {a['id']} by {ack.get('by')}{why}")

    def note(self, text: str) -> None:
        self.out.write(f"-- {text}\n")
        self.out.flush()

    def _line(self, style: str, text: str, ring: bool = False) -> None:
        if self.colour:
            text = f"{COLOURS[style]}{text}{RESET}"
        self.out.write(("\a" if ring and self.bell else "") + text + "\n")
        self.out.flush()


def follow(cfg: Config, out: TextIO = sys.stdout, bell: bool = True, colour: Optional[bool] = None,
           stop: Callable[[], bool] = lambda: False) -> int:
    """Print open alerts, then follow until interrupted (or ``stop()`` returns True)."""
    if colour is None:
        colour = out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
    printer = Printer(out, colour, bell, cfg.station.timezone)
    for a in reversed(_from_store(cfg)):
        if not a.get("acknowledged"):
            printer.alert(a, announce=False)
    client: Optional[ConsoleClient] = None
    try:
        client = ConsoleClient(cfg.console)
    except ConsoleUnavailable as exc:
        printer.note(f"{exc}; reading the store every {POLL_S:g} s")
    streaming = None
    while not stop():
        if client is not None:
            try:
                for event, data in client.events():
                    if event == "open":
                        streaming = True
                        printer.note("following the running agent")
                        _catch_up(printer, client.alerts())
                    elif event == "alert":
                        printer.alert(data)
                    elif event == "ack":
                        printer.ack(data)
                    if stop():
                        return 0
            except ConsoleRefused as exc:
                printer.note(f"the console refused: {exc} (HTTP {exc.status})")
                return 1
            except (ConsoleUnavailable, OSError):
                pass
            if streaming is not False:
                streaming = False
                printer.note("agent not reachable; reading the store until it is back")
        _catch_up(printer, _from_store(cfg))
        time.sleep(POLL_S)
    return 0


def _catch_up(printer: Printer, alerts: list[dict[str, Any]]) -> None:
    for a in reversed(alerts):
        printer.alert(a)


def _from_store(cfg: Config, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts, read-only (works beside a running agent)."""
    if not cfg.store.path.exists():
        return []
    conn = sqlite3.connect(f"file:{cfg.store.path}?mode=ro", uri=True)
    try:
        return [a.to_dict() for a in list_alerts(sqlite_utils.Database(conn), limit=limit)]
    except sqlite3.OperationalError:  # no alerts table yet
        return []
    finally:
        conn.close()


def _acc(a: dict[str, Any]) -> Optional[str]:
    return f"Acc {a['accession_number']}" if a.get("accession_number") else None
