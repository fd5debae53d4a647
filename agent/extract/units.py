"""UCUM units → the record's canonical units, exactly.

Every numeric value is converted from its DICOM string with :class:`~decimal.Decimal`
arithmetic, so ``126.596 dGy.cm2`` becomes exactly ``0.00126596 Gy.m2`` (the float
nearest to that decimal) and a value already in the canonical unit is exactly
``float(stored_string)``.

A :class:`Quantity` names what a field measures, its canonical unit and the unit(s) the
DICOM template prescribes.  :func:`convert` returns the canonical value and, when the
object used a different (but known) unit, a note saying so; an unknown unit or one of the
wrong kind gives no value at all and a note.  Nothing is guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Optional

_D = Decimal

# dimension -> {unit: factor to the dimension's base unit}
_DOSE = {"Gy": _D(1), "dGy": _D("0.1"), "cGy": _D("0.01"), "mGy": _D("0.001"), "uGy": _D("0.000001")}
_AREA = {"m2": _D(1), "dm2": _D("0.01"), "cm2": _D("0.0001"), "mm2": _D("0.000001")}
_LENGTH = {"m": _D(1000), "dm": _D(100), "cm": _D(10), "mm": _D(1), "um": _D("0.001")}

_UNITS: dict[str, dict[str, Decimal]] = {
    "dose": _DOSE,  # base Gy
    "dap": {f"{d}.{a}": fd * fa for d, fd in _DOSE.items() for a, fa in _AREA.items()},  # base Gy.m2
    "dlp": {f"{d}.{ln}": fd * fl for d, fd in _DOSE.items() for ln, fl in _LENGTH.items()},  # base Gy.mm
    "length": _LENGTH,  # base mm
    "area": _AREA,  # base m2
    "time": {"s": _D(1), "ms": _D("0.001"), "us": _D("0.000001"), "min": _D(60), "h": _D(3600),
             "d": _D(86400)},  # a radionuclide's half-life may be stated in days
    "voltage": {"kV": _D(1), "V": _D("0.001")},
    "current": {"mA": _D(1), "uA": _D("0.001"), "A": _D(1000)},
    "charge": {"uA.s": _D(1), "mA.s": _D(1000), "A.s": _D(1000000)},
    "angle": {"deg": _D(1)},
    "activity": {"MBq": _D(1), "Bq": _D("0.000001"), "kBq": _D("0.001"), "GBq": _D(1000),
                 "mCi": _D(37), "uCi": _D("0.037"), "Ci": _D(37000)},
    "mass": {"kg": _D(1), "g": _D("0.001")},
    "age": {"a": _D(1), "mo": _D(1) / _D(12), "wk": _D(7) / _D("365.25"), "d": _D(1) / _D("365.25"),
            "h": _D(1) / _D("8766"), "min": _D(1) / _D("525960")},  # CID 7456: a newborn's age in hours
    "effective_dose": {"Sv": _D(1000), "mSv": _D(1), "uSv": _D("0.001")},
    "rate": {"/s": _D(1), "pulse/s": _D(1), "1/s": _D(1), "Hz": _D(1)},  # {pulse}/s: see _ANNOTATION
    "number": {"1": _D(1)},
}

# Spellings seen in real reports (older DICOM editions, vendors) for the same unit.
_ALIASES = {
    "uAs": "uA.s", "mAs": "mA.s", "As": "A.s", "kVp": "kV",
    "sec": "s", "msec": "ms", "degree": "deg", "degrees": "deg", "y": "a", "yr": "a",
}


_UNDOTTED = re.compile(r"^([a-z]?Gy)([a-z]?m2?)$")
# UCUM annotations ({pulse}, {frames}, {Al}) carry no meaning of their own: {pulse}/s is /s
_ANNOTATION = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class Quantity:
    """What a field measures: its dimension, canonical unit and the unit(s) DICOM prescribes."""

    label: str
    dimension: str
    canonical: str
    standard: tuple[str, ...]

    @property
    def non_negative(self) -> bool:
        """An amount of radiation, time, charge or activity: a negative value is an error, not data
        (angles, lengths/positions and plain numbers such as the deviation index may be negative)."""
        return self.dimension in NON_NEGATIVE


NON_NEGATIVE = frozenset({"dap", "dose", "dlp", "time", "charge", "current", "voltage", "area", "activity",
                          "effective_dose", "mass", "age"})


def normalise_unit(code: Optional[str]) -> Optional[str]:
    """A unit code in one spelling: ``Gy.cm^2`` → ``Gy.cm2``, ``µGy`` → ``uGy``, ``Gym2`` → ``Gy.m2``,
    ``{frames}/s`` → ``/s`` (UCUM: an annotation does not change the unit)."""
    if code is None:
        return None
    u = code.strip().replace(" ", "").replace("^", "").replace("·", ".").replace("*", ".")
    u = u.replace("µ", "u").replace("μ", "u").replace("²", "2")
    u = _ALIASES.get(u, u)
    bare = _ANNOTATION.sub("", u)
    if bare and bare != u:  # an annotated unit is the unit; a bare annotation ({events}) is a label
        u = bare
    # a dose times a length or area written without the dot: dGycm2, uGym2, Gycm
    m = _UNDOTTED.match(u)
    return f"{m.group(1)}.{m.group(2)}" if m else u


def _factor(dimension: str, unit: str) -> Optional[Decimal]:
    if dimension == "number":
        return _D(1)  # counts and ratios: the unit is only a label ({events}, {ratio}, "X-ray sources")
    return _UNITS[dimension].get(unit)


def _is_label(unit: str) -> bool:
    """UCUM's dimensionless "1" and annotations such as {events}, {X-Ray sources}."""
    return unit in ("1", "") or (unit.startswith("{") and unit.endswith("}"))


def parse_decimal(text: str) -> Optional[Decimal]:
    """A DS/IS/FD string as a finite Decimal, or None if it is not a number."""
    try:
        value = _D(text.strip().rstrip("\x00").strip())
    except (InvalidOperation, AttributeError, ValueError):
        return None
    return value if value.is_finite() else None


def convert(value: Decimal, unit: Optional[str], q: Quantity,
            label: Optional[str] = None) -> tuple[Optional[float], Optional[str]]:
    """:func:`to_canonical` as a float (the float nearest the exact decimal result)."""
    result, note = to_canonical(value, unit, q, label)
    return (None if result is None else float(result)), note


def to_canonical(value: Decimal, unit: Optional[str], q: Quantity,
                 label: Optional[str] = None) -> tuple[Optional[Decimal], Optional[str]]:
    """``value`` in ``unit`` → (exact value in ``q.canonical``, note or None).

    The note (about ``label``, default the quantity's) is set when the unit differs from
    the template's (value converted) or is unknown / of the wrong kind / missing (value
    omitted: returns None).
    """
    label = label or q.label
    u = normalise_unit(unit)
    if u is None:
        if q.dimension == "number":
            return value, None
        return None, f"{label}: no measurement unit; value omitted"
    f_from = _factor(q.dimension, u)
    if f_from is None:
        return None, f"{label}: unit '{unit}' is not a {q.dimension.replace('_', ' ')} unit; value omitted"
    f_to = _factor(q.dimension, q.canonical)
    assert f_to is not None, q  # canonical units are in the tables by construction
    result = value if f_from == f_to else value * f_from / f_to
    note = None
    if q.dimension == "number":
        if not _is_label(u) and any(u in table for table in _UNITS.values()):
            return None, f"{label}: unit '{unit}' for a count or ratio; value omitted"
    elif u not in q.standard:
        note = f"{label} given in {unit} (standard: {' or '.join(q.standard)}); converted to {q.canonical}"
    return result, note


# -- the quantities the extractors read --------------------------------------------------
DAP = Quantity("Dose area product", "dap", "Gy.m2", ("Gy.m2",))
DOSE_RP = Quantity("Dose (RP)", "dose", "Gy", ("Gy",))
AGD = Quantity("Average glandular dose", "dose", "mGy", ("mGy",))
ENTRANCE = Quantity("Entrance exposure at RP", "dose", "mGy", ("mGy",))
CTDIVOL = Quantity("CTDIvol", "dose", "mGy", ("mGy",))
SSDE = Quantity("SSDE", "dose", "mGy", ("mGy",))
DLP = Quantity("DLP", "dlp", "mGy.cm", ("mGy.cm",))
ORGAN_DOSE = Quantity("Organ dose", "dose", "mGy", ("mGy",))
TIME_S = Quantity("Time", "time", "s", ("s",))
TIME_MS_STD = Quantity("Exposure time", "time", "s", ("ms",))  # projection templates use ms
PULSE_WIDTH = Quantity("Pulse width", "time", "ms", ("ms",))
LENGTH = Quantity("Length", "length", "mm", ("mm",))
AREA = Quantity("Collimated field area", "area", "m2", ("m2",))
KVP = Quantity("KVP", "voltage", "kV", ("kV",))
CURRENT = Quantity("Tube current", "current", "mA", ("mA",))
CHARGE = Quantity("Exposure", "charge", "uA.s", ("uA.s",))
ANGLE = Quantity("Angle", "angle", "deg", ("deg",))
ACTIVITY = Quantity("Activity", "activity", "MBq", ("MBq", "Bq"))
MASS = Quantity("Patient weight", "mass", "kg", ("kg",))
HEIGHT = Quantity("Patient height", "length", "m", ("m", "cm"))
AGE = Quantity("Subject age", "age", "a", ("a", "mo", "wk", "d", "h", "min"))
EFFECTIVE_DOSE = Quantity("Effective dose", "effective_dose", "mSv", ("mSv",))
RATE = Quantity("Pulse rate", "rate", "/s", tuple(_UNITS["rate"]))
NUMBER = Quantity("Number", "number", "1", ("1",))

