"""Crediting cumulative counters: resets and wrap-around never give negative or doubled doses."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.readings.counters import Credit, credit_cumulative, integrate

from .conftest import reading

WRAP = 2 ** 32


def test_increase_first_sight_and_lifetime_counters():
    credit, ref = credit_cumulative(None, None, reading("dap", 0.02, 1.0))
    assert (credit.amount, credit.event, ref) == (0.02, "first", 0.02)  # a DAP meter counts from its reset
    credit, _ = credit_cumulative(None, None, reading("counts", 5000.0, 1.0, since_reset=False))
    assert credit.amount == 0.0  # a lifetime counter's first value is only a reference
    credit, ref = credit_cumulative(0.02, 1.0, reading("dap", 0.025, 2.0))
    assert credit.amount == 0.025 - 0.02 and ref == 0.025


def test_wrap_reset_and_jitter():
    r = reading("counts", 100.0, 2.0, wrap=WRAP, since_reset=False, max_rate=1e5)
    assert credit_cumulative(WRAP - 50.0, 1.0, r)[0] == Credit(150.0, "wrap")
    # a user reset near the top of the range is not a wrap: the jump would need an impossible rate
    far = credit_cumulative(WRAP - 10_000_000.0, 1.0, r)[0]
    assert (far.amount, far.event) == (100.0, "reset")
    assert credit_cumulative(5000.0, 1.0, reading("counts", 12.0, 2.0, wrap=WRAP))[0].event == "reset"
    jitter, ref = credit_cumulative(1.0, 1.0, reading("dap", 0.9995, 2.0))
    assert (jitter.amount, jitter.event, ref) == (0.0, "jitter", 1.0)  # the higher value stays the reference
    flagged = credit_cumulative(1.0, 1.0, reading("dap", 1.5, 2.0, status="reset"))[0]
    assert (flagged.amount, flagged.event) == (1.5, "reset")


def test_rate_integration_skips_gaps():
    assert integrate(None, None, 10.0, 10.0, 1 / 3600) == 0.0
    assert integrate(3.6e-3, 0.0, 2.0, 10.0, 1 / 3600) == 3.6e-3 * 2 / 3600  # 3.6 mSv/h for 2 s = 2 µSv
    assert integrate(3.6e-3, 0.0, 11.0, 10.0, 1 / 3600) == 0.0  # unplugged for 11 s: nothing invented
    assert integrate(3.6e-3, 5.0, 4.0, 10.0, 1 / 3600) == 0.0  # clock went backwards


steps = st.lists(st.tuples(st.sampled_from(["inc", "reset"]), st.integers(0, 50_000)), min_size=1, max_size=60)


@given(start=st.integers(0, WRAP - 1), steps=steps)
def test_credits_are_never_negative_nor_more_than_what_was_counted(start, steps):
    """A wrapping counter, read once a second, incremented by ≤ 50 000 or reset between reads."""
    value, t, last, last_t = start, 0.0, None, None
    for action, n in steps:
        if action == "reset":
            value = 0
        value = (value + n) % WRAP
        t += 1.0
        credit, ref = credit_cumulative(last, last_t, reading("counts", float(value), t, wrap=WRAP,
                                                              since_reset=False, max_rate=1e5))
        assert 0 <= credit.amount
        if last is not None:
            # never more than counted since the last read, except a reset within max_rate of the top
            # of the range, which looks exactly like a wrap and is credited as one (bounded by max_rate)
            assert credit.amount <= n or (action == "reset" and credit.event == "wrap" and credit.amount <= 1e5)
            if action == "inc":
                assert credit.amount == n
        last, last_t = ref, t


def test_a_wrap_modulus_given_in_the_devices_unit_is_applied_in_the_canonical_one():
    """docs/drivers.md's example: a dose counter in µSv that wraps at 65536 (µSv). 65000, 65500, then
    464 µSv is a wrap: 500 µSv credited, not a reset that credits 464."""
    from drivers.base import make_reading

    def counter(value, t):
        return make_reading("badge", "dose", "cumulative", value, "uSv", t, b"", wrap=65536, since_reset=False)

    readings = [counter(v, float(t)) for t, v in enumerate((65000, 65500, 464), start=1)]
    assert readings[0].wrap == 0.065536
    last, last_t, credits = None, None, []
    for r in readings:
        credit, last = credit_cumulative(last, last_t, r)
        last_t = r.time
        credits.append((credit.event, round(credit.amount * 1e6, 6)))
    assert credits == [("first", 0.0), ("increase", 500.0), ("wrap", 500.0)]
