"""Automess 6150AD dose-rate meter: a 6-byte binary frame once per second, output only.

From the 6150AD technical manual (probe connector interface): 4800 baud 8N1, no handshake;
frame ``STX det MLO MHI EXP XOR`` where ``det`` names the detector (bit 7 flags the "/E" model,
17 and 19 are pulse-counting probes), ``MHI:MLO`` is an unsigned mantissa (0x4000–0x7FFF, or 0 for
zero), ``EXP`` a signed base-2 exponent and ``XOR`` the exclusive-or of bytes 2–5.  The value is
``mantissa × 2^(EXP − 15)`` in µSv/h — always, whatever the display shows — or in pulses/s for pulse
probes.  There is no cumulative value on the wire: dose is integrated by the agent (and marked derived).
"""
from __future__ import annotations

import struct

from .base import Driver, Item, LineSettings
from .framing import SyncFramer, xor8

STX = 0x02
FRAME = 6
PULSE_PROBES = {17, 19}
DETECTORS = {20: "internal GM", 21: "AD-t low range", 22: "AD-t high range", 17: "AD-17", 18: "AD-18", 19: "AD-19"}


def frame_valid(frame: bytes) -> bool:
    """XOR check, and a mantissa the meter can send (normalised, or zero)."""
    if len(frame) != FRAME or frame[0] != STX or xor8(frame[1:5]) != frame[5]:
        return False
    mantissa = frame[2] | frame[3] << 8
    return mantissa == 0 or 0x4000 <= mantissa <= 0x7FFF


def decode(frame: bytes) -> tuple[int, float]:
    """(detector code, value in µSv/h or pulses/s) of a valid frame."""
    _, detector, mantissa, exponent, _ = struct.unpack("<BBHbB", frame)
    return detector & 0x7F, mantissa * 2.0 ** (exponent - 15)


def encode(detector: int, value: float) -> bytes:
    """The frame a meter sends for ``value`` (used by the simulator and the tests)."""
    if value <= 0:
        mantissa, exponent = 0, 0
    else:
        exponent = 0
        mantissa = value * 2.0 ** 15
        while mantissa >= 0x8000:
            mantissa /= 2
            exponent += 1
        while mantissa < 0x4000:
            mantissa *= 2
            exponent -= 1
        mantissa = int(mantissa)
        exponent = max(-128, min(127, exponent))
    body = struct.pack("<BHb", detector, mantissa, exponent)
    return bytes([STX]) + body + bytes([xor8(body)])


class Automess(Driver):
    name = "automess"
    line = LineSettings(baudrate=4800)
    primary = "dose_rate"

    def __init__(self, device, options=None, poll_interval_s: float = 1.0):
        super().__init__(device, options, poll_interval_s)
        self.framer = SyncFramer(bytes([STX]), FRAME, frame_valid)

    def reopened(self, now: float) -> None:
        self.framer.reset()

    def feed(self, data: bytes, now: float) -> list[Item]:
        frames, problems = self.framer.feed(data)
        out: list[Item] = list(problems)
        for frame in frames:
            detector, value = decode(frame)
            self.info["detector"] = DETECTORS.get(detector, f"code {detector}")
            digits = repr(value)
            if detector in PULSE_PROBES:
                out.append(self.reading("count_rate", "rate", digits, "count/s", now, frame))
            else:
                out.append(self.reading("dose_rate", "rate", digits, "uSv/h", now, frame))
        return out


DRIVER = Automess
