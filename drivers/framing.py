"""Framers: turn a byte stream that arrives in arbitrary pieces into frames, and checksums.

Every framer keeps the incomplete tail for the next call, bounds its buffer (a baud-rate mismatch
produces endless garbage without terminators), and reports what it threw away as a
:class:`~drivers.base.Problem`.  After a (re)open the first fragment is dropped, because it is
almost always the second half of a frame sent before we were listening.

Line noise (a NUL or 0xFF from a meter powering up or a cable being plugged in, a glitch read as a
byte) arrives before a line, not inside it: a text line loses the noise bytes it begins with
(:data:`NOISE`), counted as garbage, and is read as what follows them.  The first line after an open
is still dropped when noise precedes it: a cable plugged into a running meter gives noise and then
the tail of a line ("7 uSv/h" of "0.07 uSv/h"), which a pattern searched anywhere in a line would
read as a value a hundred times too high; a meter switched on loses one reading at most.
"""
from __future__ import annotations

import binascii
from functools import reduce
from typing import Callable, Optional

from .base import Problem


#: bytes that are never the first character of a text line: C0 controls other than whitespace, DEL, and
#: every byte with bit 7 set (a start-bit glitch reads as 0x00, 0x80, 0xC0 … 0xFE, an idle line as 0xFF)
NOISE = bytes(range(0x00, 0x09)) + bytes(range(0x0E, 0x20)) + bytes(range(0x7F, 0x100))


class Framer:
    """A byte buffer that outlives reads; after :meth:`reset` the first fragment may be dropped."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.drop_first = False

    def reset(self, drop_first: bool = True) -> None:
        self.buffer.clear()
        self.drop_first = drop_first


class LineFramer(Framer):
    """Lines ending in ``terminator``; a bare ``\\n`` (or ``\\r``) also ends a line when ``lenient``."""

    def __init__(self, terminator: bytes = b"\r\n", max_length: int = 512, lenient: bool = True):
        super().__init__()
        self.terminator = terminator
        self.max_length = max_length
        self.lenient = lenient

    def feed(self, data: bytes) -> tuple[list[bytes], list[Problem]]:
        """Complete lines (without terminator) and the problems met on the way."""
        self.buffer += data
        lines: list[bytes] = []
        problems: list[Problem] = []
        while True:
            end, size = self._find_end()
            if end < 0:
                break
            line = bytes(self.buffer[:end])
            del self.buffer[:end + size]
            text = line.lstrip(NOISE)
            if len(text) < len(line):
                problems.append(Problem("garbage", f"{len(line) - len(text)} noise byte(s) before a line",
                                        line[:len(line) - len(text)][:64]))
                line = text
            if self.drop_first:
                self.drop_first = False
                if line:
                    problems.append(Problem("partial", "first fragment after open dropped", line))
                continue
            if len(line) > self.max_length:  # came in one read: as much garbage as one that did not
                problems.append(Problem("garbage", f"a line of {len(line)} bytes", line[:64]))
                continue
            lines.append(line)
        if len(self.buffer) > self.max_length:
            problems.append(Problem("garbage", f"no terminator in {len(self.buffer)} bytes", bytes(self.buffer[:64])))
            self.buffer.clear()
            self.drop_first = True  # what follows is the rest of a line cut off here: not a line of its own
        return lines, problems

    def _find_end(self) -> tuple[int, int]:
        end = self.buffer.find(self.terminator)
        if not self.lenient:
            return end, len(self.terminator)
        candidates = [(i, n) for i, n in ((end, len(self.terminator)), (self.buffer.find(b"\n"), 1),
                                          (self.buffer.find(b"\r"), 1)) if i >= 0]
        if not candidates:
            return -1, 0
        i, n = min(candidates)
        if n == 1 and self.buffer[i:i + 2] == b"\r\n":
            n = 2
        elif n == 1 and self.buffer[i:i + 1] == b"\r" and i == len(self.buffer) - 1 and self.terminator != b"\r":
            return -1, 0  # a CR at the very end may be followed by its LF in the next read (not if CR is the end)
        return i, n

    def take_partial(self) -> bytes:
        """The incomplete tail (and forget it)."""
        tail = bytes(self.buffer)
        self.buffer.clear()
        return tail


class SyncFramer(Framer):
    """Fixed-length binary frames starting with ``sync``, accepted only if ``valid(frame)``.

    The sync byte may also occur inside a payload, so a frame that fails validation makes the
    framer slide by one byte and hunt again, instead of skipping the whole frame length.
    """

    def __init__(self, sync: bytes, length: int, valid: Callable[[bytes], bool]):
        super().__init__()
        self.sync = sync
        self.length = length
        self.valid = valid

    def feed(self, data: bytes) -> tuple[list[bytes], list[Problem]]:
        self.buffer += data
        frames: list[bytes] = []
        problems: list[Problem] = []
        skipped = bytearray()
        checksum_failures = 0
        while True:
            start = self.buffer.find(self.sync)
            if start < 0:
                skipped += self.buffer[: max(0, len(self.buffer) - len(self.sync) + 1)]
                del self.buffer[: max(0, len(self.buffer) - len(self.sync) + 1)]
                break
            if start:
                skipped += self.buffer[:start]
                del self.buffer[:start]
            if len(self.buffer) < self.length:
                break
            frame = bytes(self.buffer[: self.length])
            if self.valid(frame):
                del self.buffer[: self.length]
                frames.append(frame)
                self.drop_first = False
            else:
                checksum_failures += 1
                skipped += self.buffer[:1]
                del self.buffer[:1]
        if skipped and not self.drop_first:
            problems.append(Problem("garbage", f"{len(skipped)} bytes outside valid frames", bytes(skipped[:64])))
        if checksum_failures and not self.drop_first:
            problems.append(Problem("checksum", f"{checksum_failures} candidate frame(s) failed validation"))
        self.drop_first = False
        return frames, problems


# -- checksums -----------------------------------------------------------------------------------
def xor8(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


def sum8(data: bytes) -> int:
    return sum(data) & 0xFF


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as computed by :func:`binascii.crc_hqx`."""
    return binascii.crc_hqx(data, 0xFFFF)


def nmea_ok(line: bytes) -> Optional[bool]:
    """``$...*HH`` lines: XOR of the characters between ``$`` and ``*``; None if the line has no checksum."""
    star = line.rfind(b"*")
    if not line.startswith(b"$") or star < 0 or len(line) < star + 3:
        return None
    try:
        expected = int(line[star + 1: star + 3], 16)
    except ValueError:
        return False
    return xor8(line[1:star]) == expected
