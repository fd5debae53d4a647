"""A pseudo-terminal that stands in for a USB-serial adapter, reachable through a stable symlink.

The symlink plays the part of ``/dev/serial/by-id/...``: :meth:`PtyLink.unplug` closes the pty (the
reader sees the same "device reports readiness to read but returned no data" error as on a real
unplug) and removes the link; :meth:`PtyLink.plug` creates a *new* pty — a different ``/dev/pts/N``,
like a re-enumerated adapter — and points the link at it.
"""
from __future__ import annotations

import os
import tty
from pathlib import Path
from typing import Optional


class PtyLink:
    def __init__(self, link: str | os.PathLike):
        self.link = Path(link)
        self.master: Optional[int] = None
        self._slave: Optional[int] = None
        self.slave_name: Optional[str] = None

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> str:
        """Create a pty, make it raw, point the link at its slave; returns the slave's name."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass unchanged, as on a serial line
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(f".{self.link.name}.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link)
        return self.slave_name

    def unplug(self) -> None:
        """Remove the link and close both ends: readers get an error, then find no device."""
        try:
            if self.link.is_symlink():
                self.link.unlink()
        except FileNotFoundError:
            pass
        for fd in (self.master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self._slave = None

    def read(self) -> bytes:
        """Whatever the host wrote (non-blocking; b'' if nothing or unplugged)."""
        if self.master is None:
            return b""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return b""

    def write(self, data: bytes) -> int:
        """Send to the host; bytes the line cannot take now are lost, as on a real device."""
        if self.master is None or not data:
            return 0
        try:
            return os.write(self.master, data)
        except (BlockingIOError, OSError):
            return 0
