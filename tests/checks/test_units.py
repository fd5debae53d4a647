"""Units are converted exactly: a threshold in any accepted unit equals the same dose in the record's unit."""
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from agent.checks import units
from agent.checks.units import UnitError, exact, quantity, to_canonical

KAP = units.QUANTITIES["KAP"]


@pytest.mark.parametrize("value,unit", [
    ("300", "Gy·cm²"), ("300", "Gy.cm2"), ("300", "Gy*cm^2"), ("300", "Gy cm2"), ("3000", "dGy·cm²"),
    ("30000", "cGy·cm²"), ("300000", "mGy·cm²"), ("30000", "µGy·m²"), ("30000", "uGy.m2"), ("0.03", "Gy·m²"),
])
def test_kap_units_all_mean_0_03_gy_m2(value, unit):
    assert to_canonical(KAP, Decimal(value), unit) == Decimal("0.03")


def test_float_from_a_record_compares_exactly_with_a_converted_threshold():
    # 0.03 as a float is 0.0299999999999999988898…; the check must still see 300 Gy·cm² reached.
    assert 0.03 < 300 * 1e-4  # the float trap the exact comparison avoids
    assert exact(0.03) >= to_canonical(KAP, 300, "Gy·cm²")
    assert exact(0.1) + exact(0.7) == exact(0.8)


@pytest.mark.parametrize("name,unit,value,canonical", [
    ("Ka,r", "mGy", "3000", "3"), ("fluoroscopy time", "min", "30", "1800"), ("fluoro_time", "h", "1", "3600"),
    ("dose equivalent", "mrem", "125", "1.25"), ("dose_equivalent", "rem", "1", "10"), ("DLP", "Gy·cm", "1", "1000"),
    ("CTDIvol", "µGy", "1500", "1.5"), ("PKA", "mGy·cm²", "1", "1E-7"),
])
def test_other_quantities_convert_exactly(name, unit, value, canonical):
    assert to_canonical(quantity(name), value, unit) == Decimal(canonical)


def test_unknown_quantity_is_refused_with_the_known_ones():
    with pytest.raises(UnitError, match=r"unknown quantity 'CTDIw'.*known: CTDIvol, DLP, KAP"):
        quantity("CTDIw")


def test_unit_of_another_quantity_is_refused():
    with pytest.raises(UnitError, match=r"unknown unit 'mGy·cm' for KAP \(accepted: Gy·m²"):
        to_canonical(KAP, 1, "mGy·cm")


@given(st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6))
def test_gy_cm2_and_gy_m2_agree_for_any_decimal(value):
    assert to_canonical(KAP, value, "Gy·cm²") == to_canonical(KAP, value / 10000, "Gy·m²")


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False))
def test_exact_reads_a_float_back_as_the_same_float(f):
    assert float(exact(f)) == f


def test_plain_keeps_exact_decimals_and_shortens_only_endless_quotients():
    assert str(units.plain(Decimal("0.0300") / Decimal("0.0001"))) == "300"
    assert str(units.plain(Decimal("7.68897349461299"))) == "7.68897349461299"
    assert str(units.plain(Decimal(2827) / 60)) == "47.1166666666667"
