"""The driver interface: one protocol's byte-level logic, and nothing else.

A driver does no I/O ("sans-IO").  The serial source owns the port and calls:

* :meth:`Driver.reopened` after every (re)open: forget partial frames and restart the handshake;
* :meth:`Driver.feed` with whatever bytes arrived, getting back :class:`Reading` and :class:`Problem` items;
* :meth:`Driver.tick` regularly (every few tens of ms), getting back the bytes to send now (poll
  requests) and whatever the passing of time concluded (a reply that timed out, an idle-terminated reply).

So the same driver runs against a real port, a simulator on a pseudo-terminal, or a byte string in a
property test.  A driver never raises on bad input: garbage, partial frames and checksum failures
become :class:`Problem` items that the source counts and logs.

Values are converted to the canonical unit of their quantity (:data:`CANONICAL_UNIT`) with decimal
arithmetic from the digits the device sent, which are kept in ``Reading.native``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict

Quantity = Literal["dap", "air_kerma", "dose", "dose_rate", "counts", "count_rate"]
Kind = Literal["cumulative", "rate"]

#: canonical unit of every (quantity, kind) a driver may report
CANONICAL_UNIT: dict[tuple[str, str], str] = {
    ("dap", "cumulative"): "Gy.m2",
    ("dap", "rate"): "Gy.m2/s",
    ("air_kerma", "cumulative"): "Gy",
    ("air_kerma", "rate"): "Gy/s",
    ("dose", "cumulative"): "Sv",
    ("dose_rate", "rate"): "Sv/h",
    ("counts", "cumulative"): "count",
    ("count_rate", "rate"): "count/min",
}

#: DAP units → factor to Gy·m²; each is also a DAP rate unit with ``/s``
_DAP = {"Gy.m2": Decimal(1), "mGy.m2": Decimal("1e-3"), "uGy.m2": Decimal("1e-6"), "Gy.cm2": Decimal("1e-4"),
        "dGy.cm2": Decimal("1e-5"), "cGy.cm2": Decimal("1e-6"), "mGy.cm2": Decimal("1e-7"), "uGy.cm2": Decimal("1e-10")}

#: native unit → (canonical unit, exact factor).  R·cm² is absent on purpose: the roentgen-to-kerma
#: factor a given DAP meter uses is not documented, so such readings are refused, not guessed.
NATIVE_UNITS: dict[str, tuple[str, Decimal]] = {
    **{unit: ("Gy.m2", factor) for unit, factor in _DAP.items()},
    **{f"{unit}/s": ("Gy.m2/s", factor) for unit, factor in _DAP.items()},
    "Gy": ("Gy", Decimal(1)), "mGy": ("Gy", Decimal("1e-3")), "uGy": ("Gy", Decimal("1e-6")),
    "Gy/s": ("Gy/s", Decimal(1)), "mGy/s": ("Gy/s", Decimal("1e-3")), "mGy/min": ("Gy/s", Decimal(1) / 60000),
    "Sv": ("Sv", Decimal(1)), "mSv": ("Sv", Decimal("1e-3")), "uSv": ("Sv", Decimal("1e-6")), "nSv": ("Sv", Decimal("1e-9")),
    "Sv/h": ("Sv/h", Decimal(1)), "mSv/h": ("Sv/h", Decimal("1e-3")), "uSv/h": ("Sv/h", Decimal("1e-6")),
    "nSv/h": ("Sv/h", Decimal("1e-9")),
    "count": ("count", Decimal(1)),
    "count/min": ("count/min", Decimal(1)), "count/s": ("count/min", Decimal(60)),
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One value a device reported (or that a driver derived from one, ``status="derived"``)."""

    device: str
    quantity: Quantity
    value: float  # in ``unit``, the canonical unit of (quantity, kind)
    unit: str
    kind: Kind
    time: float  # host clock (UNIX seconds) when the bytes that completed it arrived
    status: str = "ok"  # ok | overload | reset | derived | unverified
    raw: bytes = b""  # the frame, for diagnosis
    native: str = ""  # value and unit as the device sent them, e.g. "30000.00 cGy.cm2"
    wrap: Optional[float] = None  # a cumulative counter that wraps to 0 at this modulus (canonical unit)
    since_reset: bool = True  # cumulative counts from the device's last reset (False: a lifetime counter)
    max_rate: Optional[float] = None  # largest plausible increase per second: bounds wrap-around detection


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong on the line: counted per kind and logged by the source, never raised."""

    kind: str  # garbage | partial | checksum | timeout | device_error | unexpected | implausible | unit
    detail: str
    raw: bytes = b""


Item = Union[Reading, Problem]


@dataclass(frozen=True)
class LineSettings:
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Driver(abc.ABC):
    """One protocol.  Subclasses set ``name``, ``line``, ``Options`` and implement :meth:`feed`."""

    name: ClassVar[str]
    line: ClassVar[LineSettings] = LineSettings()
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: the quantity a site most likely wants from this device (picks the default role)
    primary: ClassVar[str] = "dose_rate"

    def __init__(self, device: str, options: Mapping[str, Any] | None = None, poll_interval_s: float = 1.0):
        self.device = device
        self.options = self.Options.model_validate(dict(options or {}))
        self.poll_interval_s = poll_interval_s
        self.info: dict[str, str] = {}  # identity replies (firmware, serial number), for health()

    def line_settings(self) -> LineSettings:
        return self.line

    def reopened(self, now: float) -> None:
        """The port was (re)opened: drop partial input and restart any handshake."""

    @abc.abstractmethod
    def feed(self, data: bytes, now: float) -> list[Item]:
        """Bytes arrived from the device."""

    def tick(self, now: float) -> tuple[bytes, list[Item]]:
        """What to send now, and what time alone concluded.  Stream devices send nothing."""
        return b"", []

    # -- helpers for subclasses ----------------------------------------------------------------
    def reading(self, quantity: Quantity, kind: Kind, digits: str | int | float | Decimal, native_unit: str,
                now: float, raw: bytes, **extra: Any) -> Item:
        """A reading converted from ``digits`` in ``native_unit``; a :class:`Problem` if that cannot be done."""
        return make_reading(self.device, quantity, kind, digits, native_unit, now, raw, **extra)


def make_reading(device: str, quantity: Quantity, kind: Kind, digits: str | int | float | Decimal, native_unit: str,
                 now: float, raw: bytes, **extra: Any) -> Item:
    """Build a canonical :class:`Reading` from a native value, exactly (decimal arithmetic)."""
    target = CANONICAL_UNIT.get((quantity, kind))
    conv = NATIVE_UNITS.get(native_unit)
    if target is None:
        return Problem("unit", f"{quantity} cannot be {kind}", raw)
    if conv is None or conv[0] != target:
        return Problem("unit", f"{native_unit!r} is not a known unit of {quantity} ({target})", raw)
    try:
        number = Decimal(str(digits).strip())
    except InvalidOperation:
        return Problem("implausible", f"not a number: {str(digits)[:40]!r}", raw)
    if not number.is_finite() or number < 0:
        return Problem("implausible", f"{quantity} {number} {native_unit}", raw)
    value = float(number * conv[1])
    if value == float("inf"):
        return Problem("implausible", f"{quantity} {number} {native_unit} out of range", raw)
    if extra.get("wrap"):  # the counter's modulus is in the device's unit, like its value
        extra["wrap"] = float(Decimal(extra["wrap"]) * conv[1])
    return Reading(device=device, quantity=quantity, value=value, unit=target, kind=kind, time=now, raw=bytes(raw),
                   native=f"{number} {native_unit}", **extra)


@dataclass
class PendingRequest:
    """The one outstanding request of a ping-pong (poll) protocol."""

    command: str
    sent_at: float
    timeout_s: float
    data: bytes = b""

    def expired(self, now: float) -> bool:
        return now - self.sent_at > self.timeout_s


@dataclass
class PollSchedule:
    """Sends an identification sequence once, then the measurement requests every ``interval_s``.

    Strict ping-pong: at most one request outstanding; one that times out is counted and the schedule
    moves on (the identification step is retried, a measurement waits for its next turn).
    """

    init: list[str]
    cycle: list[str]
    interval_s: float
    timeout_s: float
    pending: Optional[PendingRequest] = None
    _init_left: list[str] = field(default_factory=list)
    _cycle_left: list[str] = field(default_factory=list)
    _next_cycle_at: float = 0.0
    _failures: dict[str, int] = field(default_factory=dict)

    @property
    def quiet_s(self) -> float:
        """How long the line must be silent after a timed-out request before the next one is sent (a late
        reply must not be read as the answer to the next request)."""
        return min(self.timeout_s, 0.5)

    def restart(self) -> None:
        self.pending = None
        self._init_left = list(self.init)
        self._cycle_left = []
        self._next_cycle_at = 0.0
        self._failures = {}

    def next(self, now: float) -> tuple[Optional[str], list[Item]]:
        """The command to send now, if any, and a timeout problem if the last one expired."""
        problems: list[Item] = []
        if self.pending is not None:
            if not self.pending.expired(now):
                return None, problems
            problems.append(Problem("timeout", f"no complete reply to {self.pending.command!r} "
                                    f"within {self.pending.timeout_s:g} s", self.pending.data))
            command = self.pending.command
            self._failures[command] = self._failures.get(command, 0) + 1
            if command in self.init and command not in self._init_left and self._failures[command] < 3:
                self._init_left.insert(0, command)  # identification is retried twice, then skipped
            self.pending = None
        if self._init_left:
            command = self._init_left.pop(0)
        else:
            if not self._cycle_left:
                if now < self._next_cycle_at:
                    return None, problems
                self._cycle_left = list(self.cycle)
                on_time = self._next_cycle_at > now - self.interval_s
                self._next_cycle_at = (self._next_cycle_at if on_time else now) + self.interval_s
            command = self._cycle_left.pop(0)
        self.pending = PendingRequest(command, now, self.timeout_s)
        return command, problems

    def done(self) -> Optional[PendingRequest]:
        """The reply to the pending request is complete; returns (and clears) it."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self._failures.pop(pending.command, None)
        return pending
