"""GQ Electronics GMC Geiger counters (GMC-300/320/500/600/800): GQ-RFC1201 / RFC1801 polling.

Commands are ASCII ``<CMD>>``; replies are raw binary with neither terminator nor checksum, so the
host must know each reply's length: ``<GETVER>>`` returns 14 or more ASCII bytes (read until the line
is idle), ``<GETCPM>>`` returns 2 bytes (MSB first) on the 300/320 series and 4 bytes on the
500/600/800 series.  Bytes left over from an earlier reply would shift every later reply, so
whatever is in the buffer before a command is sent is discarded and counted as garbage.

A counter left in heartbeat mode by other software (``<HEARTBEAT1>>``) sends its count of the last
second every second unasked (2 bytes on RFC1201 models, 4 on RFC1801 ones); falling between a request
and its reply, those bytes would be read as the reply (the CPS as CPM, or half of each). So after every
open the driver first sends ``<HEARTBEAT0>>``, which has no reply, and waits for a quiet line before
``<GETVER>>``.

Without a checksum a flipped bit is only caught when it makes the value implausible (above
``max_cpm``).  Counts per minute are reported as such; µSv/h only when the site sets the tube's
``cpm_per_usv_h`` (the device's own calibration points are not on the wire), marked derived.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .base import Driver, Item, LineSettings, PollSchedule, Problem


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Optional[str] = None
    """Model string, e.g. ``GMC-320``; default: from the ``<GETVER>>`` reply."""
    cpm_per_usv_h: Optional[float] = Field(default=None, gt=0)
    """Tube sensitivity for a derived dose rate (e.g. 153.8 for an M4011 tube); none: counts only."""
    max_cpm: int = Field(default=10_000_000, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    version_idle_s: float = Field(default=0.1, gt=0)


class Gmc(Driver):
    name = "gmc"
    line = LineSettings(baudrate=115200)
    Options = Options
    primary = "count_rate"

    def __init__(self, device, options=None, poll_interval_s: float = 1.0):
        super().__init__(device, options, poll_interval_s)
        self.schedule = PollSchedule(init=["HEARTBEAT0", "GETVER"], cycle=["GETCPM"], interval_s=poll_interval_s,
                                     timeout_s=self.options.timeout_s)
        self.buffer = bytearray()
        self.last_byte_at = 0.0
        self.settle_from: Optional[float] = None  # a request timed out: the line must go quiet before the next
        self.model: Optional[str] = self.options.model

    @property
    def cpm_width(self) -> int:
        """2 bytes on the 300 series (GMC-300, 300E, 320), 4 on later models (and when unknown)."""
        return 2 if self.model and self.model.upper().startswith("GMC-3") else 4

    def reopened(self, now: float) -> None:
        self.buffer.clear()
        self.settle_from = None
        self.schedule.restart()

    def feed(self, data: bytes, now: float) -> list[Item]:
        self.buffer += data
        self.last_byte_at = now
        pending = self.schedule.pending
        if pending is None or self.settle_from is not None:
            return []  # discarded (and counted) before the next command
        if pending.command == "GETCPM" and len(self.buffer) >= self.cpm_width:
            return self._cpm(now)
        if len(self.buffer) > 64:
            self.schedule.done()
            junk = bytes(self.buffer)
            self.buffer.clear()
            return [Problem("garbage", f"{len(junk)} bytes in reply to {pending.command}", junk[:64])]
        return []

    def tick(self, now: float) -> tuple[bytes, list[Item]]:
        out: list[Item] = []
        pending = self.schedule.pending
        if pending is not None and pending.command == "HEARTBEAT0" \
                and now - max(pending.sent_at, self.last_byte_at) >= self.schedule.quiet_s:
            self.schedule.done()  # no reply: done once the line is quiet (a heartbeat left on has stopped)
            if self.buffer:
                out.append(Problem("unexpected", f"{len(self.buffer)} bytes unasked (a heartbeat left on) "
                                   "before <HEARTBEAT0>>", bytes(self.buffer[:64])))
                self.buffer.clear()
        elif pending is not None and pending.command == "GETVER" and self.buffer \
                and now - self.last_byte_at >= self.options.version_idle_s:
            self.schedule.done()
            self._version(bytes(self.buffer))
            self.buffer.clear()
        elif pending is not None and pending.expired(now) and self.settle_from is None:
            pending.data = bytes(self.buffer)
            self.buffer.clear()
            self.settle_from = now
        if self.settle_from is not None:
            # The replies have no framing: the late rest of the one that timed out would be read as the
            # start of the next (00 | 00 01 2C + 00... = 76,800 CPM). Wait until the line has been quiet.
            if now - max(self.settle_from, self.last_byte_at) < self.schedule.quiet_s:
                return b"", out
            self.settle_from = None
        command, timeouts = self.schedule.next(now)
        out.extend(timeouts)
        if command is None:
            return b"", out
        if self.buffer:
            out.append(Problem("garbage", f"{len(self.buffer)} stale bytes before {command}", bytes(self.buffer[:64])))
            self.buffer.clear()
        return f"<{command}>>".encode("ascii"), out

    def _version(self, reply: bytes) -> None:
        text = reply.replace(b"\x00", b"").decode("ascii", "replace").strip()
        self.info["version"] = text
        if self.options.model is None and text.startswith("GMC-"):
            self.model = text.split("Re")[0].strip() or text[:7]

    def _cpm(self, now: float) -> list[Item]:
        width = self.cpm_width
        frame = bytes(self.buffer[:width])
        extra = bytes(self.buffer[width:])
        self.buffer.clear()
        self.schedule.done()
        out: list[Item] = [Problem("garbage", f"{len(extra)} bytes after the CPM reply", extra[:64])] if extra else []
        cpm = int.from_bytes(frame, "big")
        if cpm > self.options.max_cpm:
            out.append(Problem("implausible", f"{cpm} CPM above max_cpm", frame))
            return out
        out.append(self.reading("count_rate", "rate", cpm, "count/min", now, frame))
        if self.options.cpm_per_usv_h:
            usv_h = Decimal(cpm) / Decimal(str(self.options.cpm_per_usv_h))
            out.append(self.reading("dose_rate", "rate", usv_h, "uSv/h", now, frame, status="derived"))
        return out


DRIVER = Gmc
