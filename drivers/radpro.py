"""Rad Pro firmware (FS2011, FS-600/1000/5000, GC-01, GMC-800 …): ASCII requests, ``OK``/``ERROR`` replies.

From Rad Pro's ``docs/comm.md``: 115200 8N1; every message ends CR LF (older versions: LF).
``GET tubePulseCount`` → ``OK <n>``: the lifetime pulse count, which wraps to 0 after 2^32 − 1 and
can be set by the user (a counter reset); ``GET tubeRate`` → ``OK <cpm>``; ``GET tubeSensitivity`` →
``OK <cpm per µSv/h>``; ``GET deviceId`` → ``OK <model>;<firmware>;<id>``.  The pulse count is the primary
data (a cumulative counter whose wrap and resets the agent handles); the dose rate is the device's
rate divided by the device's own tube sensitivity.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Optional

from .base import Item, LineSettings, PollSchedule, Problem
from .framing import LineFramer
from .polling import LinePollDriver

WRAP = 2 ** 32
MAX_CPS = 100_000  # far above any GM tube's saturation: a larger jump past 2^32 is a reset, not a wrap
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class RadPro(LinePollDriver):
    name = "radpro"
    line = LineSettings(baudrate=115200)
    primary = "count_rate"

    def __init__(self, device, options=None, poll_interval_s: float = 1.0):
        super().__init__(device, options, poll_interval_s)
        self.schedule = PollSchedule(init=["GET deviceId", "GET tubeSensitivity"],
                                     cycle=["GET tubePulseCount", "GET tubeRate"],
                                     interval_s=poll_interval_s, timeout_s=1.0)
        self.framer = LineFramer(b"\r\n", max_length=512)
        self.sensitivity: Optional[Decimal] = None

    def reply(self, text: str, line: bytes, now: float) -> list[Item]:
        pending = self.schedule.pending
        if text == "ERROR":
            self.schedule.done()
            return [Problem("device_error", f"ERROR in reply to {pending.command}", line)]
        if not text.startswith("OK"):
            return [Problem("garbage", "line not understood", line)]
        self.schedule.done()
        value = text[2:].strip()
        if pending.command == "GET deviceId":
            self.info["device_id"] = value
            return []
        if not _NUMBER.fullmatch(value):
            return [Problem("implausible", f"{value[:20]!r} in reply to {pending.command}", line)]
        if pending.command == "GET tubeSensitivity":
            sensitivity = Decimal(value)
            self.sensitivity = sensitivity if sensitivity > 0 else None
            return []
        if pending.command == "GET tubePulseCount":
            if int(Decimal(value)) >= WRAP:
                return [Problem("implausible", f"pulse count {value} above 2^32", line)]
            return [self.reading("counts", "cumulative", value, "count", now, line, wrap=WRAP, since_reset=False,
                                 max_rate=MAX_CPS)]
        out = [self.reading("count_rate", "rate", value, "count/min", now, line)]
        if self.sensitivity:
            try:
                usv_h = Decimal(value) / self.sensitivity
            except InvalidOperation:
                return out
            out.append(self.reading("dose_rate", "rate", usv_h, "uSv/h", now, line))
        return out


DRIVER = RadPro
