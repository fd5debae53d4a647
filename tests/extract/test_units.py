"""Unit conversion: exact, noted when the unit is not the template's, never a guess."""
from __future__ import annotations

from decimal import Decimal

import pytest

from agent.extract import units as U


@pytest.mark.parametrize("value, unit, quantity, expected", [
    ("126.596", "dGy.cm2", U.DAP, 0.00126596),
    ("0.2359", "Gy.cm^2", U.DAP, 2.359e-05),
    ("3", "cGy.cm2", U.DAP, 3e-06),
    ("7", "mGy.cm2", U.DAP, 7e-07),
    ("5", "uGy.m2", U.DAP, 5e-06),
    ("30.573", "mGy", U.DOSE_RP, 0.030573),
    ("1.5", "Gy.cm", U.DLP, 1500.0),
    ("580.000019", "ms", U.TIME_MS_STD, 0.580000019),
    ("2", "mAs", U.CHARGE, 2000.0),
    ("6", "mo", U.AGE, 0.5),
    ("172", "cm", U.HEIGHT, 1.72),
    ("2.5", "dGycm2", U.DAP, 2.5e-05),  # the same units written without the dot
    ("3", "uGym2", U.DAP, 3e-06),
])
def test_conversions_are_exact(value, unit, quantity, expected):
    result, _ = U.convert(Decimal(value), unit, quantity)
    assert result == expected


@pytest.mark.parametrize("unit, quantity", [("Gy.m2", U.DAP), ("Gym2", U.DAP), ("mGy.cm", U.DLP), ("mGycm", U.DLP),
                                            ("uA.s", U.CHARGE), ("uAs", U.CHARGE),
                                            ("{pulse}/s", U.RATE), ("pulse/s", U.RATE)])
def test_standard_units_and_their_old_spellings_need_no_note(unit, quantity):
    assert U.convert(Decimal("1.25"), unit, quantity) == (1.25, None)


@pytest.mark.parametrize("unit", ["{frames}/s", "{frame}/s", "{Pulses}/s", "1{pulse}/s"])
def test_a_ucum_annotation_does_not_change_the_unit(unit):
    """UCUM annotations in braces carry no meaning: a pulse rate in {frames}/s is a rate in /s like the
    standard's {pulse}/s (it was omitted as 'not a rate unit')."""
    assert U.convert(Decimal("7.5"), unit, U.RATE) == (7.5, None)


def test_a_count_in_an_annotated_physical_unit_is_not_a_count():
    assert U.convert(Decimal("30"), "{pulses}/s", U.NUMBER)[0] is None
    assert U.convert(Decimal("30"), "{pulses}", U.NUMBER) == (30.0, None)


def test_a_half_life_in_days_is_converted_to_seconds():
    """UCUM 'd' (Tc-99m 0.25 d, I-131 8.02 d): the radionuclide half-life was omitted as 'not a time unit'."""
    assert U.convert(Decimal("8.02"), "d", U.TIME_S) == \
        (692928.0, "Time given in d (standard: s); converted to s")


def test_a_template_unit_other_than_the_canonical_one_is_converted_silently():
    assert U.convert(Decimal("1.25"), "ms", U.TIME_MS_STD) == (0.00125, None)  # projection exposure time


def test_a_conversion_from_a_non_standard_unit_is_noted():
    value, note = U.convert(Decimal("0.384"), "mGy", U.DOSE_RP, "Dose (RP)")
    assert value == 0.000384 and note == "Dose (RP) given in mGy (standard: Gy); converted to Gy"


@pytest.mark.parametrize("unit", ["furlong", "mGy", None])
def test_unknown_or_wrong_kind_of_unit_gives_no_value(unit):
    value, note = U.convert(Decimal("12"), unit, U.DAP, "DAP")
    assert value is None and "value omitted" in note


def test_counts_accept_annotations_but_not_physical_units():
    assert U.convert(Decimal("2"), "{X-Ray sources}", U.NUMBER) == (2.0, None)
    assert U.convert(Decimal("2"), "X-ray sources", U.NUMBER) == (2.0, None)
    assert U.convert(Decimal("2"), "mm", U.NUMBER)[0] is None


@pytest.mark.parametrize("text, expected", [("1.5", Decimal("1.5")), (" 40.196", Decimal("40.196")),
                                            ("4.05878e-006", Decimal("0.00000405878")), ("10.50/ 15.00", None),
                                            ("", None), ("nan", None), ("inf", None)])
def test_parse_decimal(text, expected):
    assert U.parse_decimal(text) == expected


def test_a_datetime_with_an_impossible_utc_offset_is_omitted_with_a_note():
    """'+9999' was passed on as '2024-01-01T10:10:10+99:99', which no ISO 8601 reader accepts."""
    from agent.extract.common import Notes, dt_iso

    notes = Notes()
    assert dt_iso("20240101101010+1400", notes) == "2024-01-01T10:10:10+14:00"
    assert dt_iso("20240101101010-1200", notes) == "2024-01-01T10:10:10-12:00"
    assert dt_iso("20240101101010+0545", notes) == "2024-01-01T10:10:10+05:45"
    assert notes.as_list() == []
    for bad in ("20240101101010+9999", "20240101101010+1460", "20240101101010-1300", "20240101101010+1401"):
        assert dt_iso(bad, notes) is None
    assert len(notes.as_list()) == 4 and all("not a valid date-time" in n for n in notes.as_list())
