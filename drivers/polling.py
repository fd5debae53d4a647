"""Ping-pong ASCII protocols: one request line, one reply line, one request outstanding at a time."""
from __future__ import annotations

import abc
from typing import Optional

from .base import Driver, Item, PollSchedule, Problem
from .framing import LineFramer


SETTLE_MAX = 4  # quiet_s at most this many times over: then the next request goes out, quiet or not


class LinePollDriver(Driver):
    """Sends ``schedule``'s commands terminated by ``terminator`` and hands each reply line to :meth:`reply`.

    Bytes that arrive while no request is outstanding are counted as garbage before the next request
    (a late reply must not be taken for the answer to the next one).  After a request timed out, the
    next one is sent only once the line has been quiet for ``schedule.quiet_s``: a device answers in
    order, so the late reply would otherwise arrive while the next request is outstanding and be read as its
    answer (Rad Pro's ``OK <n>`` does not say which request it answers).
    """

    terminator = b"\r\n"
    schedule: PollSchedule
    framer: LineFramer
    _settle_from: Optional[float] = None  # a request timed out then: wait for a quiet line
    _last_byte_at: float = 0.0

    def reopened(self, now: float) -> None:
        self.framer.reset(drop_first=False)  # nothing arrives unasked
        self.schedule.restart()
        self._settle_from = None

    def tick(self, now: float) -> tuple[bytes, list[Item]]:
        problems: list[Item] = []
        pending = self.schedule.pending
        if pending is not None and pending.expired(now) and self._settle_from is None:
            pending.data = self.framer.take_partial()
            self._settle_from = now
        if self._settle_from is not None:
            waited = now - self._settle_from
            quiet_s = self.schedule.quiet_s
            if now - max(self._settle_from, self._last_byte_at) < quiet_s and waited < SETTLE_MAX * quiet_s:
                return b"", problems  # (a line that is never quiet, e.g. noise or a device streaming, is asked anyway)
            self._settle_from = None
        if self.framer.buffer and (pending is None or pending.expired(now)):
            problems.append(Problem("garbage", "unsolicited bytes", self.framer.take_partial()))
        command, timeouts = self.schedule.next(now)
        return (self.encode(command) if command else b""), problems + timeouts

    def encode(self, command: str) -> bytes:
        return command.encode("latin-1") + self.terminator

    def feed(self, data: bytes, now: float) -> list[Item]:
        if data:
            self._last_byte_at = now
        lines, problems = self.framer.feed(data)
        out: list[Item] = list(problems)
        for line in lines:
            text = line.decode("latin-1").strip()
            if not text:
                continue
            if self.schedule.pending is None or self._settle_from is not None:
                out.append(Problem("unexpected", "reply without a request (or after its timeout)", line))
                continue
            out.extend(self.reply(text, line, now))
        return out

    @abc.abstractmethod
    def reply(self, text: str, line: bytes, now: float) -> list[Item]:
        """One reply line to ``self.schedule.pending``; call ``self.schedule.done()`` once it is answered."""
