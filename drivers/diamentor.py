"""PTW DIAMENTOR dose-area-product meter: ASCII ping-pong telegrams terminated by CR LF.

What is implemented comes from the public pymeasure driver and its tests (tested by its author on a
DIAMENTOR whose ``PTW`` reply starts with ``CRS``); nothing here comes from PTW's own interface manual.

Known (and used): ``PTW`` → firmware id; ``SER`` → ``SER<number>``; ``U`` → ``U<n>`` display unit
(1 cGy·cm², 2 Gy·cm², 3 µGy·m², 4 R·cm²); ``M`` → ``M<dap>,<dap rate>,<min>,<s>,…`` where the first field is
the DAP accumulated since the last reset, the second the current DAP rate and the next two the measuring
time since that reset; error replies ``E<n>`` (table :data:`ERRORS`).

Unknown, marked so in the readings and docs/drivers.md:

* the time base of the DAP rate (taken as per second; rate readings carry ``status="unverified"``);
* fields 4–8 of the ``M`` reply (kept in ``raw``, never interpreted);
* the roentgen-to-kerma factor behind unit 4 (R·cm²): such readings are refused, not converted.

The driver only reads.  It never sends ``RES`` (a procedure boundary is the operator's) nor any
calibration write (``KA``, ``KFA``, ``PRE``, ``TMPA``, ``BR``).
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .base import Item, LineSettings, PollSchedule, Problem
from .framing import LineFramer
from .polling import LinePollDriver

ERRORS = {
    1: "syntax error, unknown command", 4: "charge overflow", 5: "maximum input current exceeded",
    6: "chamber voltage out of range", 7: "parameter write protected", 9: "parameter out of range",
    23: "EEPROM read/write error", 24: "not calibrated electrically", 25: "input buffer overrun",
    26: "firmware malfunction",
}
UNITS = {"1": "cGy.cm2", "2": "Gy.cm2", "3": "uGy.m2", "4": "R.cm2"}
OVERLOAD_CODES = {4, 5}

_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_MEASUREMENT = re.compile(rf"^M\s*(?P<dap>{_NUMBER}),\s*(?P<rate>{_NUMBER}),\s*(?P<min>\d+),\s*(?P<sec>\d+)(?:,.*)?$")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: Optional[int] = Field(default=None, ge=1, le=4)
    """Skip the ``U`` query and assume this display unit code (for firmware that does not answer it)."""
    timeout_s: float = Field(default=2.0, gt=0)


class Diamentor(LinePollDriver):
    name = "diamentor"
    line = LineSettings(baudrate=9600)
    Options = Options
    primary = "dap"

    def __init__(self, device, options=None, poll_interval_s: float = 0.5):
        super().__init__(device, options, poll_interval_s)
        # the display unit is asked before every measurement: it can be changed on the meter's keypad while the
        # port stays open, and a DAP read in the unit before would be stored 100 times too high or too low
        cycle = ["M"] if self.options.unit else ["U", "M"]
        self.schedule = PollSchedule(init=["PTW", "SER"], cycle=cycle, interval_s=poll_interval_s,
                                     timeout_s=self.options.timeout_s)
        self.framer = LineFramer(b"\r\n", max_length=256)
        self.unit: Optional[str] = UNITS[str(self.options.unit)] if self.options.unit else None
        self.last_time_s: Optional[int] = None
        self.last_dap: Optional[Decimal] = None

    def reply(self, text: str, line: bytes, now: float) -> list[Item]:
        pending = self.schedule.pending
        error = re.fullmatch(r"E(\d{1,2})", text)
        if error:
            self.schedule.done()
            code = int(error.group(1))
            meaning = ERRORS.get(code, "unknown error code")
            if code in OVERLOAD_CODES:  # the chamber saturates: the DAP stops growing while dose is delivered
                return [Problem("overload", f"E{code} ({meaning}): the DAP is not being measured in full", line)]
            return [Problem("device_error", f"E{code} ({meaning}) in reply to {pending.command}", line)]
        command = pending.command
        if command == "PTW":
            self.schedule.done()
            self.info["firmware"] = text
            return []
        if command == "SER" and text.startswith("SER"):
            self.schedule.done()
            self.info["serial_number"] = text[3:]
            return []
        if command == "U" and re.fullmatch(r"U[1-4]", text):
            self.schedule.done()
            unit, self.unit = self.unit, UNITS[text[1]]
            self.info["unit"] = self.unit
            if unit is not None and unit != self.unit:  # the same DAP, another number: not a reset
                self.last_dap = None
                return [Problem("unit", f"display unit changed from {unit} to {self.unit} on the meter; "
                                "readings are converted from the new one", line)]
            return []
        if command == "M" and text.startswith("M"):
            self.schedule.done()
            return self._measurement(text, line, now)
        return [Problem("unexpected", f"reply {text[:20]!r} to {command}", line)]

    def _measurement(self, text: str, line: bytes, now: float) -> list[Item]:
        m = _MEASUREMENT.match(text)
        if not m:
            return [Problem("implausible", "measurement telegram not understood", line)]
        if self.unit is None:
            return [Problem("unit", "display unit not known yet (no reply to U)", line)]
        if self.unit == "R.cm2":
            return [Problem("unit", "R·cm² display unit: conversion factor undocumented, set the meter to Gy", line)]
        elapsed = int(m["min"]) * 60 + int(m["sec"])
        dap = Decimal(m["dap"])
        # the measuring time restarts at a reset; as the time fields are unverified, only together
        # with a DAP that did not grow (a DAP that fell is a reset for the agent anyway)
        reset = (self.last_time_s is not None and self.last_dap is not None and elapsed < self.last_time_s
                 and dap <= self.last_dap)
        self.last_time_s, self.last_dap = elapsed, dap
        return [self.reading("dap", "cumulative", m["dap"], self.unit, now, line, status="reset" if reset else "ok"),
                self.reading("dap", "rate", m["rate"], self.unit + "/s", now, line, status="unverified")]


DRIVER = Diamentor
