"""MightyOhm Geiger counter kit (and the LVA firmware): one CSV line per second, output only.

9600 8N1, lines end CR LF: ``CPS, <n>, CPM, <n>, uSv/hr, <x.xx>, SLOW|FAST|INST``.  CPM is a 60-s
sliding sum (SLOW), a 5-s average ×12 above 1000 CPM (FAST), or CPS×60 above 255 CPS (INST); the µSv/h
figure is the firmware's CPM × 57/10000 for the kit's SBM-20 tube; a line whose two figures disagree is
damaged (there is no checksum) and is a problem, not a reading.  Forks send only ``CPS, n, CPM, n``
and mark an overflowing counter with ``*``.  Boot banner lines are skipped.
"""
from __future__ import annotations

import re

from .base import Driver, Item, LineSettings, Problem
from .framing import LineFramer

LINE = re.compile(
    r"^CPS,\s*(?P<cps>\d+)(?P<cps_over>\*?),\s*CPM,\s*(?P<cpm>\d+)(?P<cpm_over>\*?)"
    r"(?:,\s*uSv/hr,\s*(?P<usv>\d+(?:\.\d+)?),\s*(?P<mode>SLOW|FAST|INST))?\s*$")


class MightyOhm(Driver):
    name = "mightyohm"
    line = LineSettings(baudrate=9600)
    primary = "dose_rate"

    def __init__(self, device, options=None, poll_interval_s: float = 1.0):
        super().__init__(device, options, poll_interval_s)
        self.framer = LineFramer(b"\r\n", max_length=256)
        self.seen_data = False  # the banner comes at boot, before the first data line

    def reopened(self, now: float) -> None:
        self.framer.reset()
        self.seen_data = False

    def feed(self, data: bytes, now: float) -> list[Item]:
        lines, problems = self.framer.feed(data)
        out: list[Item] = list(problems)
        for line in lines:
            text = line.decode("ascii", "replace").strip()
            if not text:
                continue
            m = LINE.match(text)
            if m is None:
                # a boot banner or URL line, before any data; a damaged data line (CQS, 9, CPM, 540, …) is not one
                if (text.isprintable() and not self.seen_data and not text.startswith("CPS")
                        and not re.search(r"CPM|uSv|,\s*\d", text)):
                    self.info.setdefault("banner", text[:80])
                    continue
                out.append(Problem("garbage", "line not understood", line))
                continue
            self.seen_data = True
            if m["usv"] is not None and not _agree(int(m["cpm"]), float(m["usv"])):
                # the line has no checksum: a damaged digit would be integrated as the wearer's dose
                out.append(Problem("implausible", f"uSv/hr {m['usv'][:12]} does not agree with CPM {m['cpm'][:12]}", line))
                continue
            status = "overload" if m["cpm_over"] or m["cps_over"] else "ok"
            if m["mode"]:
                self.info["mode"] = m["mode"]
            out.append(self.reading("count_rate", "rate", m["cpm"], "count/min", now, line, status=status))
            if m["usv"] is not None:
                out.append(self.reading("dose_rate", "rate", m["usv"], "uSv/h", now, line, status=status))
        return out


def _agree(cpm: int, usv: float) -> bool:
    """Whether the line's µSv/h is the firmware's own CPM × 57/10000 (printed with two decimals, cut)."""
    expected = cpm * 57 / 10000
    return abs(usv - expected) <= 0.011 + 0.02 * expected


DRIVER = MightyOhm
