"""A driver on a real pseudo-terminal, read with pyserial the way the serial source reads a port.

The test plays the device on the master side, byte for byte: :meth:`PtyRig.send` writes bytes (each
piece is read by the driver before the next is written, so a frame can be cut at any boundary) and
``answers`` replies to the driver's requests (an answer ``(delay_s, bytes)`` comes late).
"""
from __future__ import annotations

import os
import time
import tty
from typing import Callable, Optional, Union

import serial

from drivers.base import Driver
from tests.drivers.conftest import Collected

Answer = Union[bytes, Callable[[bytes], Union[bytes, tuple[float, bytes]]]]


class PtyRig(Collected):
    def __init__(self, driver: Driver, answers: Optional[dict[bytes, Answer]] = None):
        self.driver = driver
        self.answers = dict(answers or {})
        self.master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(self.master, False)
        self._slave = slave
        line = driver.line_settings()
        self.port = serial.Serial(os.ttyname(slave), baudrate=line.baudrate, bytesize=line.bytesize,
                                  parity=line.parity, stopbits=line.stopbits, timeout=0.01, exclusive=True)
        self.items: list = []
        self.requests: list[bytes] = []
        self._pending = b""
        self._late: list[tuple[float, bytes]] = []  # (due, bytes) of answers the device gives late
        driver.reopened(time.time())

    def close(self) -> None:
        self.port.close()
        for fd in (self.master, self._slave):
            os.close(fd)

    def __enter__(self) -> "PtyRig":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one turn of the source's loop ------------------------------------------------------------------
    def step(self) -> None:
        out, items = self.driver.tick(time.time())
        self.items.extend(items)
        if out:
            self.port.write(out)
            self.port.flush()
        self._answer()
        data = self.port.read(self.port.in_waiting or 1)
        if data:
            self.items.extend(self.driver.feed(data, time.time()))

    def run(self, seconds: float, until: Optional[Callable[["PtyRig"], bool]] = None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until(self)):
            self.step()

    def _answer(self) -> None:
        now = time.monotonic()
        while self._late and self._late[0][0] <= now:
            self.send(self._late.pop(0)[1], read=False)
        try:
            self._pending += os.read(self.master, 4096)
        except BlockingIOError:
            return
        for request in sorted(self.answers, key=len, reverse=True):
            if self._pending.startswith(request):
                self._pending = self._pending[len(request):]
                self.requests.append(request)
                answer = self.answers[request]
                answer = answer(request) if callable(answer) else answer
                if isinstance(answer, tuple):  # (delay in seconds, bytes)
                    self._late.append((time.monotonic() + answer[0], answer[1]))
                elif self._late:  # a device answers in order: after the late one
                    self._late.append((self._late[-1][0], answer))
                else:
                    self.send(answer, read=False)
                return

    def send(self, *pieces: bytes, read: bool = True) -> None:
        """Write each piece and (``read``) let the driver read it before the next one is written."""
        for piece in pieces:
            os.write(self.master, piece)
            if not read:
                continue
            got = b""
            deadline = time.monotonic() + 2.0
            while len(got) < len(piece) and time.monotonic() < deadline:
                got += self.port.read(len(piece) - len(got))
            assert got == piece, (got, piece)
            self.items.extend(self.driver.feed(got, time.time()))


def cuts(frame: bytes):
    """``frame`` whole, then cut in two at every byte boundary."""
    yield (frame,)
    for i in range(1, len(frame)):
        yield frame[:i], frame[i:]
