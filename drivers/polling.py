"""Ping-pong ASCII protocols: one request line, one reply line, one request outstanding at a time."""
from __future__ import annotations

import abc

from .base import Driver, Item, PollSchedule, Problem
from .framing import LineFramer


class LinePollDriver(Driver):
    """Sends ``schedule``'s commands terminated by ``terminator`` and hands each reply line to :meth:`reply`.

    Bytes that arrive while no request is outstanding are counted as garbage before the next request
    (a late reply must not be taken for the answer to the next one).
    """

    terminator = b"\r\n"
    schedule: PollSchedule
    framer: LineFramer

    def reopened(self, now: float) -> None:
        self.framer.reset(drop_first=False)  # nothing arrives unasked
        self.schedule.restart()

    def tick(self, now: float) -> tuple[bytes, list[Item]]:
        problems: list[Item] = []
        pending = self.schedule.pending
        if pending is None and self.framer.buffer:
            problems.append(Problem("garbage", "unsolicited bytes", self.framer.take_partial()))
        elif pending is not None and pending.expired(now):
            pending.data = self.framer.take_partial()
        command, timeouts = self.schedule.next(now)
        return (self.encode(command) if command else b""), problems + timeouts

    def encode(self, command: str) -> bytes:
        return command.encode("latin-1") + self.terminator

    def feed(self, data: bytes, now: float) -> list[Item]:
        lines, problems = self.framer.feed(data)
        out: list[Item] = list(problems)
        for line in lines:
            text = line.decode("latin-1").strip()
            if not text:
                continue
            if self.schedule.pending is None:
                out.append(Problem("unexpected", "reply without a request", line))
                continue
            out.extend(self.reply(text, line, now))
        return out

    @abc.abstractmethod
    def reply(self, text: str, line: bytes, now: float) -> list[Item]:
        """One reply line to ``self.schedule.pending``; call ``self.schedule.done()`` once it is answered."""
