"""The generic driver: a device described by a TOML profile instead of code.

A site captures what its device sends (``python -m serial.tools.miniterm``, ``socat -x``) and writes a
profile: line settings, framing (text lines or fixed-length binary frames with a sync byte), checksum,
stream or poll mode, a regular expression or a ``struct`` layout for the fields, small arithmetic for
derived fields, and for each reported quantity its field, native unit and semantics (rate or
cumulative, wrap-around modulus, counts from reset or lifetime).  ``config/serial-profiles/`` holds
examples and docs/drivers.md describes every key.  Profiles are validated when the configuration is
checked; an unknown key is an error.
"""
from __future__ import annotations

import ast
import operator
import re
import struct
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .base import CANONICAL_UNIT, NATIVE_UNITS, Item, LineSettings, PollSchedule, Problem
from .framing import LineFramer, SyncFramer, crc16_ccitt, nmea_ok, sum8, xor8
from .polling import LinePollDriver


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineModel(_Model):
    baudrate: int = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 1.5, 2] = 1
    rtscts: bool = False
    xonxoff: bool = False


class FramingModel(_Model):
    kind: Literal["line", "fixed"] = "line"
    terminator: str = "\r\n"
    """line: end of a line (a bare LF or CR is also accepted when ``lenient``)."""
    lenient: bool = True
    max_length: int = Field(default=512, ge=2, le=65536)
    encoding: Literal["ascii", "latin-1"] = "ascii"
    strip_parity_bit: bool = False
    """For 7-bit devices read as 8 bits: clear bit 7 of every byte."""
    sync: str = "02"
    """fixed: hex bytes that start a frame."""
    length: int = Field(default=0, ge=0, le=4096)
    """fixed: whole frame length in bytes, sync and checksum included."""


class ChecksumModel(_Model):
    kind: Literal["none", "xor", "sum8", "crc16_ccitt", "nmea_xor"] = "none"
    """xor, sum8 (the last byte), crc16_ccitt (the last two, MSB first): fixed frames; nmea_xor: text lines."""
    start: int = 1
    """fixed frames: first byte covered (index into the frame)."""
    end: Optional[int] = None
    """fixed frames: one past the last byte covered (negative: from the end); default: up to the check byte(s)."""

    @property
    def size(self) -> int:
        """Bytes of the check value at the end of a fixed frame."""
        return 2 if self.kind == "crc16_ccitt" else 1

    def span(self, length: int) -> tuple[int, int]:
        """The covered bytes of a ``length``-byte frame as (first, one past the last), non-negative."""
        start = self.start if self.start >= 0 else length + self.start
        end = length - self.size if self.end is None else (self.end if self.end >= 0 else length + self.end)
        return start, end


class ModeModel(_Model):
    kind: Literal["stream", "poll"] = "stream"
    init: list[str] = []
    """poll: commands sent once after opening (their replies are kept as device info)."""
    request: str = ""
    """poll: the measurement request, sent every ``interval_s``; the line terminator is appended."""
    interval_s: Optional[float] = Field(default=None, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)


class ParseModel(_Model):
    kind: Literal["regex", "struct"] = "regex"
    pattern: str = ""
    """regex: named groups become fields."""
    format: str = ""
    """struct: a :mod:`struct` format covering the whole frame, e.g. ``<BBHbB``."""
    fields: list[str] = []
    """struct: a name per unpacked value (``_`` to ignore one)."""
    derived: dict[str, str] = {}
    """name = arithmetic over fields (+ - * / // % ** & | ^ << >>, parentheses, numbers)."""
    ignore: str = ""
    """regex of lines that are not data (banners, prompts): skipped without a problem."""


class ErrorModel(_Model):
    pattern: str
    meaning: str = "device error"


class QuantityModel(_Model):
    field: str
    quantity: Literal["dap", "air_kerma", "dose", "dose_rate", "counts", "count_rate"]
    kind: Optional[Literal["cumulative", "rate"]] = None
    """Default: rate for dose_rate/count_rate, cumulative for dose/counts; required for dap/air_kerma."""
    unit: str
    """The device's unit, e.g. ``cGy.cm2``, ``uSv/h``, ``count/min`` (docs/drivers.md lists them)."""
    wrap: Optional[int] = Field(default=None, gt=1)
    since_reset: bool = True
    max_rate: Optional[float] = Field(default=None, gt=0)
    """Largest plausible increase per second (canonical unit): a drop that would need more is a reset, not a wrap."""
    overload_field: Optional[str] = None
    """A field that, when non-empty and not "0", marks the value as overloaded."""
    when: dict[str, list[Union[int, str]]] = {}
    """Read this quantity only from frames/lines whose fields have one of these values, e.g.
    ``{detector = [20, 21]}`` (numbers for struct fields, text for regex groups)."""

    @model_validator(mode="after")
    def _semantics(self) -> "QuantityModel":
        if self.kind is None:
            implied = {"dose_rate": "rate", "count_rate": "rate", "dose": "cumulative", "counts": "cumulative"}
            if self.quantity not in implied:
                raise ValueError(f"say kind = 'cumulative' or 'rate' for {self.quantity}")
            self.kind = implied[self.quantity]  # type: ignore[assignment]
        target = CANONICAL_UNIT.get((self.quantity, self.kind))
        if target is None:
            raise ValueError(f"{self.quantity} cannot be {self.kind}")
        if self.unit not in NATIVE_UNITS or NATIVE_UNITS[self.unit][0] != target:
            known = sorted(u for u, (t, _) in NATIVE_UNITS.items() if t == target)
            raise ValueError(f"unit {self.unit!r} is not a unit of {self.quantity} {self.kind}; use one of {known}")
        return self


class Profile(_Model):
    name: str
    description: str = ""
    line: LineModel = LineModel()
    framing: FramingModel = FramingModel()
    checksum: ChecksumModel = ChecksumModel()
    mode: ModeModel = ModeModel()
    parse: ParseModel
    errors: list[ErrorModel] = []
    quantity: list[QuantityModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "Profile":
        p, f = self.parse, self.framing
        if p.kind == "regex":
            try:
                groups = set(re.compile(p.pattern).groupindex)
            except re.error as exc:
                raise ValueError(f"parse.pattern: {exc}") from exc
            if f.kind == "fixed":
                raise ValueError("regex parsing needs framing.kind = 'line'")
        else:
            try:
                size = struct.calcsize(p.format)
            except struct.error as exc:
                raise ValueError(f"parse.format: {exc}") from exc
            if f.kind != "fixed" or size != f.length:
                raise ValueError(f"struct parsing needs framing.kind = 'fixed' with length = {size}")
            groups = {n for n in p.fields if n != "_"}
            if len(p.fields) != len(struct.unpack(p.format, bytes(size))):
                raise ValueError("parse.fields needs one name per value of parse.format")
        for name, expression in p.derived.items():
            unknown = _names(expression) - groups
            if unknown:
                raise ValueError(f"parse.derived.{name} uses unknown field(s) {sorted(unknown)}")
            groups.add(name)
        for q in self.quantity:
            if q.field not in groups:
                raise ValueError(f"quantity field {q.field!r} is not a parsed or derived field")
            unknown = set(q.when) - groups
            if unknown:
                raise ValueError(f"quantity {q.field!r}: when names unknown field(s) {sorted(unknown)}")
        if self.mode.kind == "poll" and (not self.mode.request or f.kind != "line"):
            raise ValueError("poll mode needs mode.request and line framing")
        if f.kind == "fixed" and f.length < len(bytes.fromhex(f.sync)) + 1:
            raise ValueError("framing.length must cover the sync bytes and a payload")
        c = self.checksum
        if c.kind in ("xor", "sum8", "crc16_ccitt"):
            if f.kind != "fixed":  # it would never be checked: every damaged line a reading
                raise ValueError(f"checksum.kind = {c.kind!r} checks the last byte(s) of fixed frames; a text line's "
                                 "checksum can be nmea_xor ($...*HH), no other")
            start, end = c.span(f.length)
            if not 0 <= start < end <= f.length - c.size:
                raise ValueError(f"checksum.start/end cover bytes {start}..{end - 1} of the {f.length}-byte frame: "
                                 f"they must lie before its {c.size} check byte(s)")
        if c.kind == "nmea_xor" and f.kind != "line":
            raise ValueError("checksum.kind = 'nmea_xor' checks text lines ($...*HH), not fixed frames")
        for e in self.errors:
            re.compile(e.pattern)
        return self

    @field_validator("framing")
    @classmethod
    def _sync_hex(cls, f: FramingModel) -> FramingModel:
        try:
            if not bytes.fromhex(f.sync):
                raise ValueError
        except ValueError:
            raise ValueError("framing.sync must be hex bytes, e.g. '02' or 'AA 55'") from None
        return f


def is_profile_file(path: str | Path) -> bool:
    """A TOML file with top-level ``parse`` and ``quantity``: a profile, not an agent configuration."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "parse" in data and "quantity" in data


def check_profile_file(path: str | Path) -> list[str]:
    """Every problem of a profile as ``key: message``; empty if it is valid."""
    try:
        load_profile(path)
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"TOML syntax: {exc}"]
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc'])) or 'profile'}: {e['msg']}" for e in exc.errors()]
    return []


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile (raises ``ValueError``/``OSError`` with the reason)."""
    with open(path, "rb") as fh:
        return Profile.model_validate(tomllib.load(fh))


# -- a tiny arithmetic evaluator (no eval) --------------------------------------------------------
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift}


def _names(expression: str) -> set[str]:
    tree = ast.parse(expression, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load,
                                 ast.USub, ast.UAdd, *_BINARY)):
            raise ValueError(f"{type(node).__name__} is not allowed in {expression!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise ValueError(f"only numbers are allowed in {expression!r}")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def evaluate(expression: str, fields: dict[str, Any]) -> Any:
    """Evaluate whitelisted arithmetic over ``fields`` (validated by :func:`_names` at load)."""
    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return _number(fields[node.id])
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.Pow, ast.LShift)) and abs(right) > 1024:
                raise ValueError("exponent or shift too large")
            return _BINARY[type(node.op)](left, right)
        raise ValueError(type(node).__name__)
    return ev(ast.parse(expression, mode="eval"))


def _number(value: Any) -> Any:
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)


class Options(_Model):
    profile: Path
    """Path of the TOML profile (relative paths: to the agent's working directory)."""


class Generic(LinePollDriver):
    name = "generic"
    Options = Options

    def __init__(self, device, options=None, poll_interval_s: float = 1.0, profile: Profile | None = None):
        super().__init__(device, options, poll_interval_s)
        self.profile = profile or load_profile(self.options.profile)
        p = self.profile
        self.primary = p.quantity[0].quantity
        self.terminator = p.framing.terminator.encode("latin-1")
        if p.framing.kind == "line":
            self.framer: Any = LineFramer(self.terminator, p.framing.max_length, p.framing.lenient)
        else:
            self.framer = SyncFramer(bytes.fromhex(p.framing.sync), p.framing.length, self._frame_valid)
        self.schedule = PollSchedule(init=list(p.mode.init), cycle=[p.mode.request],
                                     interval_s=p.mode.interval_s or poll_interval_s, timeout_s=p.mode.timeout_s)
        self.pattern = re.compile(p.parse.pattern) if p.parse.kind == "regex" else None
        self.ignore = re.compile(p.parse.ignore) if p.parse.ignore else None
        self.errors = [(re.compile(e.pattern), e.meaning) for e in p.errors]

    def line_settings(self) -> LineSettings:
        return LineSettings(**self.profile.line.model_dump())

    def reopened(self, now: float) -> None:
        super().reopened(now)
        self.framer.reset(drop_first=self.profile.mode.kind == "stream")

    def tick(self, now: float) -> tuple[bytes, list[Item]]:
        if self.profile.mode.kind == "stream":
            return b"", []
        return super().tick(now)

    def feed(self, data: bytes, now: float) -> list[Item]:
        if self.profile.framing.strip_parity_bit:
            data = bytes(b & 0x7F for b in data)
        if self.profile.framing.kind == "fixed":
            frames, problems = self.framer.feed(data)
            out: list[Item] = list(problems)
            for frame in frames:
                out.extend(self._frame(frame, now))
            return out
        if self.profile.mode.kind == "poll":
            return super().feed(data, now)
        lines, problems = self.framer.feed(data)
        out = list(problems)
        for line in lines:
            text = line.decode(self.profile.framing.encoding, "replace").strip()
            if text:
                out.extend(self.reply(text, line, now))
        return out

    def reply(self, text: str, line: bytes, now: float) -> list[Item]:
        polling = self.profile.mode.kind == "poll"
        pending = self.schedule.pending if polling else None
        for pattern, meaning in self.errors:
            if pattern.search(text):
                self.schedule.done()
                return [Problem("device_error", f"{meaning}: {text[:40]}", line)]
        if pending is not None and pending.command != self.profile.mode.request:
            self.schedule.done()
            self.info[pending.command] = text[:80]  # an identification reply
            return []
        if self.ignore and self.ignore.search(text):
            return []
        if self.profile.checksum.kind == "nmea_xor" and nmea_ok(line) is not True:
            return [Problem("checksum", "NMEA checksum missing or wrong", line)]
        m = self.pattern.search(text) if self.pattern else None
        if m is None:
            return [Problem("garbage", "line does not match parse.pattern", line)]
        if polling:
            self.schedule.done()
        return self._readings({k: v for k, v in m.groupdict().items() if v is not None}, line, now)

    def _frame_valid(self, frame: bytes) -> bool:
        c = self.profile.checksum
        if c.kind == "none":
            return True
        start, end = c.span(len(frame))
        covered = frame[start:end]
        if c.kind == "crc16_ccitt":
            return crc16_ccitt(covered) == int.from_bytes(frame[-2:], "big")
        return (xor8(covered) if c.kind == "xor" else sum8(covered)) == frame[-1]

    def _frame(self, frame: bytes, now: float) -> list[Item]:
        values = struct.unpack(self.profile.parse.format, frame)
        fields = {n: v for n, v in zip(self.profile.parse.fields, values) if n != "_"}
        return self._readings(fields, frame, now)

    def _readings(self, fields: dict[str, Any], raw: bytes, now: float) -> list[Item]:
        try:
            for name, expression in self.profile.parse.derived.items():
                fields[name] = evaluate(expression, fields)
        except (ValueError, ArithmeticError, KeyError, TypeError) as exc:
            return [Problem("implausible", f"derived field: {exc}", raw)]
        out: list[Item] = []
        for q in self.profile.quantity:
            if q.field not in fields:
                continue  # an optional group that did not match
            if any(fields.get(name) not in allowed for name, allowed in q.when.items()):
                continue  # e.g. another kind of probe on the same line
            value = fields[q.field]
            digits = repr(value) if isinstance(value, float) else str(value)
            overload = q.overload_field and str(fields.get(q.overload_field, "") or "").strip() not in ("", "0")
            extra: dict[str, Any] = {"status": "overload" if overload else "ok"}
            if q.kind == "cumulative":
                extra.update(wrap=q.wrap, since_reset=q.since_reset, max_rate=q.max_rate)
            assert q.kind is not None
            out.append(self.reading(q.quantity, q.kind, _decimal_digits(digits), q.unit, now, raw, **extra))
        return out


def _decimal_digits(digits: str) -> str:
    """Numbers as text Decimal accepts (``inf``/``nan`` become a refused reading upstream)."""
    try:
        Decimal(digits)
        return digits
    except ArithmeticError:
        return "nan"


DRIVER = Generic
