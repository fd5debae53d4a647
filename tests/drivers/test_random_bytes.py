"""Property: whatever bytes arrive, in whatever pieces, no driver raises and none reports a negative dose."""
from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
from drivers.automess import encode
from drivers.base import CANONICAL_UNIT, Problem, Reading
from drivers.generic import Generic, load_profile

PROFILES = Path(__file__).resolve().parents[2] / "config" / "serial-profiles"

# plausible fragments mixed into the noise, so that parsers get past their first checks
FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b"M", b"M30000.00,512.25,3,7,0,0,0,0,00000\r\n", b"M-5,1,0,0\r\n", b"M1e400,0,0,1\r\n",
    b"U1\r\n", b"U4\r\n", b"E4\r\n", b"CRS 1.2.4\r\n", b"SER12\r\n", encode(20, 1.0), encode(17, 5.0),
    b"\x02\x14\xff\xff\x7f\x94", b"GMC-320Re 5.73", b"GMC-500+Re 1.22", b"\xff\xff\xff\xff", b"\x00\x1c",
    b"CPS, 1, CPM, 7, uSv/hr, 0.04, SLOW\r\n", b"CPS, 99999999999999999999, CPM, 1*\r\n",
    b"OK 4294967295\r\n", b"OK 4294967296\r\n", b"OK -1\r\n", b"OK nan\r\n", b"OK 0.000\r\n", b"ERROR\r\n",
    b"$BNRDD,1,2012-07-05T12:02:36Z,4,3,4,V,3543.1917,N,13942.0190,E,25.30,A,9999,0*69\r\n",
    b"$BNRDD,1,x,4,3,4,V,*00\r\n",
]

chunks = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(FRAGMENTS)), max_size=40)
steps = st.lists(st.tuples(chunks, st.floats(min_value=0, max_value=3)), min_size=1, max_size=8)


LOADED = [(p, load_profile(p)) for p in sorted(PROFILES.glob("*.toml"))]


def all_drivers():
    made = [drivers.create(name, "dev") for name in drivers.names() if name != "generic"]
    made += [drivers.create("gmc", "dev", {"cpm_per_usv_h": 0.001}), drivers.create("diamentor", "dev", {"unit": 1})]
    made += [Generic("dev", {"profile": path}, profile=profile) for path, profile in LOADED]
    return made


def check(items):
    for item in items:
        assert isinstance(item, (Reading, Problem))
        if isinstance(item, Reading):
            assert math.isfinite(item.value) and item.value >= 0, item
            assert CANONICAL_UNIT[(item.quantity, item.kind)] == item.unit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_no_driver_raises_or_reports_a_negative_value(steps):
    for driver in all_drivers():
        t = 1000.0
        driver.reopened(t)
        for pieces, dt in steps:
            t += dt
            out, items = driver.tick(t)
            assert isinstance(out, bytes)
            check(items)
            for piece in pieces:
                t += 0.001
                check(driver.feed(piece, t))


def test_a_line_longer_than_any_frame_in_one_read_is_garbage_not_an_exception():
    """A tty read can return a few kB at once; a 5,000-digit field in it made the DIAMENTOR and MightyOhm
    parsers raise (Python's int() refuses more than 4,300 digits) instead of reporting a problem."""
    big = b"9" * 5000
    for name, options, line in [("mightyohm", {}, b"CPS, 1, CPM, " + big + b", uSv/hr, 0.34, SLOW\r\n"),
                                ("diamentor", {"unit": 2}, b"M1,0," + big + b",1\r\n")]:
        driver = drivers.create(name, "dev", options)
        driver.reopened(1000.0)
        driver.framer.reset(drop_first=False)
        driver.tick(1000.0)
        if name == "diamentor":
            driver.schedule.init, driver.schedule.pending = [], None
            driver.schedule.restart()
            assert driver.tick(1001.0)[0] == b"M\r\n"
        items = driver.feed(line, 1001.1)
        assert [i.kind for i in items if isinstance(i, Problem)] == ["garbage"] and not any(
            isinstance(i, Reading) for i in items)
