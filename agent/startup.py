"""What systemd hears while ``alara-edge run`` does its start-up work, before READY (``Type=notify``).

Opening the store checks it (``quick_check``) and applies the migrations an upgrade brings, some of them
backfills over every report: on a slow SD card with years of reports that can take longer than the unit's
start timeout, and systemd would stop the agent mid-migration and start it again, from the beginning, for
ever. While such work makes progress, :class:`Startup` sends ``EXTEND_TIMEOUT_USEC`` every
:data:`EXTEND_EVERY_S` with a ``STATUS`` line saying what it is doing (``systemctl status alara-edge``).

Progress is any of: SQLite executing instructions for the step (the progress handler of the connection
:meth:`Startup.watching` watches), this process reading or writing storage (``read_bytes``/``write_bytes``
of ``/proc/self/io``), or a new step beginning. Start-up work with none of these gets no more extensions,
so systemd still stops a start that is stuck (a disk that no longer answers) :data:`EXTEND_BY_S` after its
last progress. A start that is done within :data:`EXTEND_EVERY_S` sends nothing before READY.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Callable, Iterator, Optional

import structlog

log = structlog.get_logger("agent.startup")

EXTEND_EVERY_S = 3.0  # how often start-up work still going on is told to systemd
EXTEND_BY_S = 90.0  # each extension: how long start-up may then go without progress before systemd stops it
STALL_LOG_S = 30.0  # start-up work without progress this long is logged (once per stall)
SQLITE_OPS = 10_000  # SQLite instructions between two progress ticks (about a millisecond of work each)


def _storage_bytes() -> int:
    """Bytes this process has read from and written to storage so far (0 where Linux does not say)."""
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
        return int(fields.get("read_bytes", 0)) + int(fields.get("write_bytes", 0))
    except (OSError, ValueError):
        return 0


class Startup:
    """Start-up work before READY. ``notify`` sends one sd_notify message (``sdnotify.SystemdNotifier.notify``:
    a no-op without ``NOTIFY_SOCKET``); None tells no one (a command opening the store). Used as a context
    manager around the work; :meth:`step` names each step as it begins."""

    def __init__(self, notify: Optional[Callable[[str], None]] = None, every_s: float = EXTEND_EVERY_S,
                 by_s: float = EXTEND_BY_S):
        self._notify = notify
        self._every_s, self._by_s = every_s, by_s
        self._what = "starting"
        self._steps = 0
        self._ticks = 0
        self._began = time.monotonic()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.told = False  # a STATUS was sent (cleared at READY, so that no finished step stays shown)

    def __enter__(self) -> "Startup":
        self._began = time.monotonic()
        if self._notify is not None:
            self._thread = threading.Thread(target=self._run, name="startup-notify", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def took_s(self) -> float:
        return time.monotonic() - self._began

    def step(self, what: str) -> None:
        """Start-up work moves on to ``what`` (the STATUS systemd shows while it lasts)."""
        self._what = what
        self._steps += 1

    def tick(self) -> int:
        """SQLite's progress handler: the statement in hand goes on (0: do not interrupt it)."""
        self._ticks += 1
        return 0

    @contextlib.contextmanager
    def watching(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Count what SQLite executes on ``conn`` as progress while in the block."""
        if self._notify is None:
            yield
            return
        conn.set_progress_handler(self.tick, SQLITE_OPS)
        try:
            yield
        finally:
            conn.set_progress_handler(None, SQLITE_OPS)

    def _progress(self) -> tuple[int, int, int]:
        return self._steps, self._ticks, _storage_bytes()

    def _run(self) -> None:
        """Every ``every_s`` until READY: extend systemd's start timeout if the work moved since the last look."""
        seen, moved_at, logged, stall_logged = self._progress(), time.monotonic(), None, False
        while not self._done.wait(self._every_s):
            now = self._progress()
            if now != seen:
                seen, moved_at, stall_logged = now, time.monotonic(), False
                self._notify(f"EXTEND_TIMEOUT_USEC={int(self._by_s * 1e6)}\nSTATUS={self._what}")
                self.told = True
                if logged != self._what:  # the journal says once what a slow step is
                    logged = self._what
                    log.info("startup_in_progress", step=self._what, elapsed_s=round(self.took_s(), 1))
            elif not stall_logged and time.monotonic() - moved_at >= STALL_LOG_S:
                stall_logged = True
                log.warning("startup_no_progress", step=self._what, for_s=round(time.monotonic() - moved_at),
                            hint=f"systemd's start timeout is no longer extended: it stops the agent "
                                 f"{self._by_s:g} s after the last progress")
