"""The profile-driven driver: validation of profiles, safe arithmetic, and equivalence with a built-in driver."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pydantic import ValidationError

import drivers
from drivers.automess import encode
from drivers.framing import crc16_ccitt
from drivers.generic import Generic, Profile, evaluate, load_profile

from .conftest import Harness
from .pty import PtyRig

PROFILES = Path(__file__).resolve().parents[2] / "config" / "serial-profiles"


def profile(**overrides):
    base = {"name": "t", "parse": {"pattern": r"^D(?P<v>\d+)$"},
            "quantity": [{"field": "v", "quantity": "dose_rate", "unit": "uSv/h"}]}
    base.update(overrides)
    return Profile.model_validate(base)


def test_every_example_profile_loads():
    names = {load_profile(p).name for p in PROFILES.glob("*.toml")}
    assert {"bgeigie-nano", "automess-6150ad", "ptw-diamentor-cgycm2"} <= names


@pytest.mark.parametrize("overrides, message", [
    ({"quantity": [{"field": "v", "quantity": "dap", "unit": "cGy.cm2"}]}, "say kind"),
    ({"quantity": [{"field": "v", "quantity": "dose_rate", "unit": "R/h"}]}, "not a unit of dose_rate"),
    ({"quantity": [{"field": "x", "quantity": "dose_rate", "unit": "uSv/h"}]}, "not a parsed or derived field"),
    ({"parse": {"pattern": "(unclosed"}}, "parse.pattern"),
    ({"parse": {"pattern": r"(?P<v>\d+)", "derived": {"w": "__import__('os')"}}}, "not allowed"),
    ({"parse": {"kind": "struct", "format": "<BH", "fields": ["a", "v"]}}, "framing.kind = 'fixed'"),
    ({"mode": {"kind": "poll"}}, "poll mode needs"),
    ({"surprise": 1}, "Extra inputs"),
])
def test_bad_profiles_are_refused_with_a_reason(overrides, message):
    with pytest.raises(ValidationError) as exc:
        profile(**overrides)
    assert message in str(exc.value)


def test_arithmetic_is_evaluated_without_eval():
    assert evaluate("mant * 2 ** (exp - 15)", {"mant": 16384, "exp": 1}) == 1.0
    assert evaluate("(raw & 0x3FFF) * 60", {"raw": "49153"}) == 60
    with pytest.raises(ValueError):
        evaluate("1 << 100000", {})


def test_the_6150ad_profile_reads_what_the_builtin_driver_reads():
    stream = encode(20, 0.1) + b"\x00\x02" + encode(20, 12.34) + encode(20, 1.0)
    builtin = Harness(drivers.create("automess", "a"))
    generic = Harness(drivers.create("generic", "a", {"profile": PROFILES / "automess-6150ad.toml"}))
    for h in (builtin, generic):
        h.driver.framer.reset(drop_first=False)
        h.feed(stream[:5])
        h.feed(stream[5:])
    assert [r.value for r in generic.readings] == [r.value for r in builtin.readings] == [9.999847412109375e-08, 1.233984375e-05, 1e-6]


def test_the_6150ad_profile_reads_a_pulse_probe_as_counts_as_the_builtin_driver_does():
    """Probes 17 and 19 count pulses: 500 of them per second is not 500 µSv/h."""
    stream = encode(17, 500.0) + encode(19 | 0x80, 250.0) + encode(20 | 0x80, 2.0)
    builtin = Harness(drivers.create("automess", "a"))
    generic = Harness(drivers.create("generic", "a", {"profile": PROFILES / "automess-6150ad.toml"}))
    for h in (builtin, generic):
        h.driver.framer.reset(drop_first=False)
        h.feed(stream)
    seen = [[(r.quantity, r.unit, r.value) for r in h.readings] for h in (builtin, generic)]
    assert seen[0] == seen[1] == [("count_rate", "count/min", 30000.0), ("count_rate", "count/min", 15000.0),
                                  ("dose_rate", "Sv/h", 2e-6)]


def test_bgeigie_checksum_and_cumulative_semantics():
    h = Harness(drivers.create("generic", "nano", {"profile": PROFILES / "bgeigie-nano.toml"}))
    h.driver.framer.reset(drop_first=False)
    good = b"$BNRDD,1,2012-07-05T12:02:36Z,4,3,4,V,3543.1917,N,13942.0190,E,25.30,A,9999,0*69\r\n"
    h.feed(b"booting\r\n" + good + good.replace(b",4,3,4,", b",5,3,4,"))
    cpm, total = h.readings
    assert (cpm.quantity, cpm.value, total.quantity, total.value, total.since_reset) == \
        ("count_rate", 4.0, "counts", 4.0, True)
    assert [p.kind for p in h.problems] == ["checksum"]


def test_poll_profile_talks_to_a_diamentor(tmp_path):
    h = Harness(drivers.create("generic", "dap", {"profile": PROFILES / "ptw-diamentor.toml"}))
    replies = {b"PTW\r\n": b"CRS 1.2.4\r\n", b"SER\r\n": b"SER1\r\n", b"M\r\n": b"M30000.00,1.00,0,9,0\r\n"}
    for _ in range(3):
        request = h.tick(1.0)
        h.feed(replies[request])
    assert [(r.quantity, r.kind, r.value) for r in h.readings] == [("dap", "cumulative", 0.03)]
    assert h.driver.info == {"PTW": "CRS 1.2.4", "SER": "SER1"}


def test_driver_options_are_checked_in_the_config():
    from agent.config import check_text

    problems = check_text('[[serial]]\ndriver = "gmc"\nport = "/dev/ttyUSB0"\ncpm_per_usv = 3\n')
    assert problems and "cpm_per_usv" in problems[0]
    assert check_text('[[serial]]\ndriver = "generic"\nport = "x"\nprofile = "missing.toml"\n')
    assert check_text('[[serial]]\ndriver = "nope"\nport = "x"\n')[0].startswith("serial.0")
    assert check_text('[[serial]]\ndriver = "gmc"\nport = "x"\nmodel = "GMC-320"\nwearer = "B-17"\n') == []


def test_check_config_validates_a_profile_on_its_own(tmp_path):
    from ..conftest import run_agent

    good = run_agent("check-config", str(PROFILES / "bgeigie-nano.toml"))
    assert good.returncode == 0 and good.stdout.strip().endswith(": ok")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[parse]\npattern = "(?P<v>\\\\d+)"\n[[quantity]]\nfield = "w"\nquantity = "dose"\n'
                   'unit = "uSv"\n')
    done = run_agent("check-config", str(bad))
    assert done.returncode == 1 and "quantity field 'w' is not a parsed or derived field" in done.stderr


@pytest.mark.parametrize("unit, value, gym2_per_s", [
    ("mGy.cm2/s", "250", 2.5e-5), ("uGy.m2/s", "12", 1.2e-5), ("dGy.cm2/s", "3", 3e-5), ("Gy.cm2/s", "0.5", 5e-5),
])
def test_a_dap_rate_profile_may_use_any_dap_unit_per_second(unit, value, gym2_per_s):
    """docs/drivers.md: DAP rate takes every DAP unit with /s (a profile in mGy.cm2/s was refused)."""
    spec = profile(quantity=[{"field": "v", "quantity": "dap", "kind": "rate", "unit": unit}])
    reading = drivers.base.make_reading("d", "dap", "rate", value, spec.quantity[0].unit, 0.0, b"")
    assert reading.unit == "Gy.m2/s" and reading.value == pytest.approx(gym2_per_s, rel=1e-12)


@pytest.mark.parametrize("overrides, message", [
    ({"checksum": {"kind": "xor"}}, "checks the last byte(s) of fixed frames"),
    ({"checksum": {"kind": "crc16_ccitt"}}, "checks the last byte(s) of fixed frames"),
    ({"framing": {"kind": "fixed", "length": 4}, "checksum": {"kind": "nmea_xor"},
      "parse": {"kind": "struct", "format": ">BHB", "fields": ["_", "v", "_"]}}, "not fixed frames"),
    ({"framing": {"kind": "fixed", "length": 5}, "checksum": {"kind": "crc16_ccitt", "end": -1},
      "parse": {"kind": "struct", "format": ">BHH", "fields": ["_", "v", "_"]}}, "must lie before its 2 check byte(s)"),
])
def test_a_checksum_the_driver_would_not_check_is_refused(overrides, message):
    """docs/drivers.md: xor, sum8 and crc16_ccitt are the last byte(s) of fixed frames, nmea_xor is $...*HH
    lines. A line profile with checksum xor loaded and never checked anything (a damaged line was a reading),
    and so did a fixed-frame profile with nmea_xor."""
    with pytest.raises(ValidationError) as exc:
        profile(**overrides)
    assert message in str(exc.value)


def test_a_crc16_frame_is_checked_over_the_bytes_before_its_crc():
    """The default span ran to the last byte but one, so the CRC's own first byte was covered: every good
    frame failed its check and no reading was ever stored."""
    spec = profile(framing={"kind": "fixed", "sync": "AA", "length": 6}, checksum={"kind": "crc16_ccitt"},
                   parse={"kind": "struct", "format": ">BHBH", "fields": ["_", "v", "flags", "_"]},
                   quantity=[{"field": "v", "quantity": "dose_rate", "unit": "nSv/h"}])
    body = b"\xaa" + struct.pack(">HB", 1234, 7)
    frame = body + struct.pack(">H", crc16_ccitt(body[1:]))
    flipped = bytearray(frame)
    flipped[1] ^= 0x40
    with PtyRig(Generic("d", {"profile": "p.toml"}, profile=spec)) as rig:
        rig.driver.framer.reset(drop_first=False)
        rig.send(frame, bytes(flipped), frame)
        assert [r.value for r in rig.readings] == [1.234e-6, 1.234e-6]
        assert "checksum" in {p.kind for p in rig.problems}
