"""Dose quantities, their units, and exact conversion between them.

Every comparison the checks make is done in a quantity's *canonical* unit (the unit the
dose record uses: ``Gy·m²`` for KAP, ``Gy`` for Ka,r, ``s`` for fluoroscopy time …) and in
:class:`~decimal.Decimal`, never in binary floating point: a threshold of 300 Gy·cm² is
exactly 0.03 Gy·m², and a report stating 0.03 Gy·m² is exactly at it.  Observed values
arrive as floats parsed from DICOM decimal strings; :func:`exact` turns them back into the
shortest decimal that reads as the same float, which is the string the modality sent for
any value of up to 15 significant digits.

Conversions are multiplications by exact factors (powers of ten, 60, 3600, 10 mSv per rem),
so a threshold written in any accepted unit converts without rounding.  This is a small
table rather than a units library because the libraries compute in floats.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Optional, Union

Number = Union[int, float, str, Decimal]


@dataclass(frozen=True)
class Quantity:
    name: str  # the name used in tables and alerts, e.g. "KAP"
    label: str  # for messages, e.g. "kerma-area product (KAP)"
    canonical: str  # the dose record's unit
    units: dict[str, Decimal]  # unit → factor to the canonical unit
    display: str  # unit for statistics


QUANTITIES: dict[str, Quantity] = {q.name: q for q in [
    Quantity("CTDIvol", "CTDIvol", "mGy", {"mGy": Decimal(1), "Gy": Decimal(1000), "µGy": Decimal("0.001")}, "mGy"),
    Quantity("DLP", "DLP", "mGy·cm", {"mGy·cm": Decimal(1), "Gy·cm": Decimal(1000), "mGy·mm": Decimal("0.1")}, "mGy·cm"),
    Quantity("KAP", "kerma-area product (KAP)", "Gy·m²", {
        "Gy·m²": Decimal(1), "dGy·m²": Decimal("0.1"), "cGy·m²": Decimal("0.01"), "mGy·m²": Decimal("0.001"),
        "µGy·m²": Decimal("0.000001"), "Gy·cm²": Decimal("0.0001"), "dGy·cm²": Decimal("0.00001"),
        "cGy·cm²": Decimal("0.000001"), "mGy·cm²": Decimal("0.0000001"), "µGy·cm²": Decimal("0.0000000001"),
    }, "Gy·cm²"),
    Quantity("Ka_r", "air kerma at the reference point (Ka,r)", "Gy",
             {"Gy": Decimal(1), "cGy": Decimal("0.01"), "mGy": Decimal("0.001")}, "mGy"),
    Quantity("PSD", "peak skin dose", "Gy", {"Gy": Decimal(1), "cGy": Decimal("0.01"), "mGy": Decimal("0.001")}, "mGy"),
    Quantity("fluoro_time", "fluoroscopy time", "s", {"s": Decimal(1), "min": Decimal(60), "h": Decimal(3600)}, "s"),
    Quantity("AGD", "average glandular dose (AGD)", "mGy", {"mGy": Decimal(1), "Gy": Decimal(1000), "µGy": Decimal("0.001")}, "mGy"),
    Quantity("ESD", "entrance surface dose (ESD)", "mGy", {"mGy": Decimal(1), "Gy": Decimal(1000), "µGy": Decimal("0.001")}, "mGy"),
    Quantity("dose_equivalent", "personal dose equivalent", "mSv", {
        "mSv": Decimal(1), "Sv": Decimal(1000), "µSv": Decimal("0.001"), "rem": Decimal(10), "mrem": Decimal("0.01"),
    }, "mSv"),
]}

QUANTITY_ALIASES = {
    "dap": "KAP", "pka": "KAP", "kap": "KAP",
    "ka,r": "Ka_r", "kar": "Ka_r", "ka_r": "Ka_r", "air kerma at reference point": "Ka_r", "cak": "Ka_r",
    "fluoro time": "fluoro_time", "fluoroscopy time": "fluoro_time", "fluoro_time": "fluoro_time",
    "ctdivol": "CTDIvol", "dlp": "DLP", "agd": "AGD", "mgd": "AGD", "esd": "ESD", "psd": "PSD",
    "peak skin dose": "PSD", "dose equivalent": "dose_equivalent", "dose_equivalent": "dose_equivalent",
    "hp(10)": "dose_equivalent", "hp(3)": "dose_equivalent", "hp(0.07)": "dose_equivalent",
}


class UnitError(ValueError):
    """An unknown quantity, or a unit that is not a unit of the quantity."""


def quantity(name: str) -> Quantity:
    """The quantity called ``name`` (case-insensitive; DAP = PKA = KAP, "Ka,r" = Ka_r …)."""
    key = QUANTITY_ALIASES.get(name.strip().lower())
    if key is None:
        known = ", ".join(QUANTITIES)
        raise UnitError(f"unknown quantity {name!r} (known: {known}; DAP and PKA are accepted for KAP)")
    return QUANTITIES[key]


def _unit_key(unit: str) -> str:
    """Spelling-independent key: 'Gy·cm²', 'Gy.cm2', 'Gy*cm^2', 'Gy cm2' → 'Gycm2'; μ/u → µ."""
    u = unit.strip().replace("μ", "µ").replace("^", "").replace("²", "2")
    u = re.sub(r"[·⋅.*\s]", "", u)
    return re.sub(r"^u(?=[GS])", "µ", u)


def unit(q: Quantity, name: str) -> str:
    """The standard spelling of unit ``name`` of quantity ``q``; raises :class:`UnitError` if it is not one."""
    key = _unit_key(name)
    for standard in q.units:
        if _unit_key(standard) == key:
            return standard
    raise UnitError(f"unknown unit {name!r} for {q.name} (accepted: {', '.join(q.units)})")


def exact(value: Number | None) -> Decimal | None:
    """A float from a dose record as the decimal it was written as (``0.03`` → ``Decimal('0.03')``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(repr(value))
    return Decimal(str(value))


def to_canonical(q: Quantity, value: Number, unit_name: str) -> Decimal:
    """``value`` in ``unit_name`` expressed exactly in ``q``'s canonical unit."""
    v = exact(value)
    if v is None:
        raise UnitError(f"{value!r} is not a number")
    return v * q.units[unit(q, unit_name)]


def from_canonical(q: Quantity, value: Decimal, unit_name: str) -> Decimal:
    """A canonical value expressed in ``unit_name`` (exact for decimal factors)."""
    return value / q.units[unit(q, unit_name)]


def text(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: ``Decimal('3E+2')`` → ``'300'``."""
    return format(value.normalize(), "f")


def plain(value: Decimal) -> Decimal:
    """The value without exponent or trailing zeros (``Decimal('3.0E+2')`` → ``Decimal('300')``), and at
    most 15 significant digits, which only shortens a non-terminating quotient (2827 s = 47.1166… min)."""
    if len(value.as_tuple().digits) > 15:
        value = round(value, 14 - value.adjusted())
    return Decimal(text(value))


def short(value: Decimal, digits: int = 4) -> str:
    """A value for a sentence: at most ``digits`` significant digits, no exponent."""
    if value == 0:
        return "0"
    rounded = round(value, max(0, digits - 1 - value.adjusted()))
    return text(rounded)


def total_of(values: Iterable[Optional[Decimal]]) -> Optional[Decimal]:
    """The exact sum of the values that are present; None when none is."""
    present = [v for v in values if v is not None]
    return sum(present, Decimal(0)) if present else None
