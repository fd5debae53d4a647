"""Line noise, partial frames and a line that recovers, over a real pseudo-terminal: a NUL or 0xFF from a
meter powering up (or a cable being plugged in) must not cost the reading that follows it."""
from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from drivers.generic import Generic, Profile, load_profile

from .pty import PtyRig

PROFILES = Path(__file__).resolve().parents[2] / "config" / "serial-profiles"
MIGHTYOHM = b"CPS, 1, CPM, 60, uSv/hr, 0.34, SLOW\r\n"
BNRDD = b"$BNRDD,1,2012-07-05T12:02:36Z,4,3,4,V,3543.1917,N,13942.0190,E,25.30,A,9999,0*69\r\n"


def test_a_stream_line_after_noise_is_read():
    with PtyRig(drivers.create("mightyohm", "g")) as rig:
        rig.send(b"\x00" + MIGHTYOHM)  # noise then the first line after the open: dropped, as any first fragment
        rig.send(MIGHTYOHM, b"\xff\x00" + MIGHTYOHM, b"\xfe", MIGHTYOHM.replace(b"60", b"61"))
        assert [r.value for r in rig.readings if r.quantity == "count_rate"] == [60.0, 60.0, 61.0]
        assert {p.kind for p in rig.problems} == {"garbage", "partial"}


def unanchored() -> Generic:
    """A profile whose pattern is searched anywhere in a line, as a site may write one."""
    spec = Profile.model_validate({"name": "t", "parse": {"pattern": r"(?P<v>[0-9.]+) uSv/h"},
                                   "quantity": [{"field": "v", "quantity": "dose_rate", "unit": "uSv/h"}]})
    return Generic("d", {"profile": "p.toml"}, profile=spec)


def test_the_tail_of_a_line_after_plug_in_noise_is_not_read_as_a_value():
    with PtyRig(unanchored()) as rig:
        rig.send(b"\xff\x007 uSv/h\r\n")  # plugged into a running meter in the middle of "0.07 uSv/h"
        rig.send(b"0.08 uSv/h\r\n")
        assert [r.value for r in rig.readings] == [pytest.approx(8e-8)]


def test_the_rest_of_a_line_cut_off_by_an_overflow_is_not_read_as_a_value():
    with PtyRig(unanchored()) as rig:
        rig.send(b"0.01 uSv/h\r\n")  # the first fragment after the open: dropped
        rig.send(b"0.02 uSv/h\r\n", b"\x55" * 600)  # a burst with no terminator overflows the line buffer ...
        rig.send(b"3 uSv/h\r\n", b"0.04 uSv/h\r\n")  # ... whose line ends here: "...0.03 uSv/h" read as 3
        assert [r.value for r in rig.readings] == [pytest.approx(2e-8), pytest.approx(4e-8)]
        assert "garbage" in {p.kind for p in rig.problems}


def test_a_bgeigie_sentence_after_a_nul_is_read_not_skipped_as_a_boot_message():
    path = PROFILES / "bgeigie-nano.toml"
    with PtyRig(Generic("nano", {"profile": path}, profile=load_profile(path))) as rig:
        rig.send(b"\r\n", b"\x00" + BNRDD, b"\xff", BNRDD)
        assert [(r.quantity, r.value) for r in rig.readings] == [("count_rate", 4.0), ("counts", 4.0)] * 2


def test_a_polled_reply_after_a_nul_is_its_answer():
    answers = {b"GET deviceId\r\n": b"\x00OK FS2011;Rad Pro 2.0/en;0\r\n",
               b"GET tubeSensitivity\r\n": b"\x00OK 153.800\r\n",
               b"GET tubePulseCount\r\n": b"\xffOK 1500\r\n", b"GET tubeRate\r\n": b"\x00OK 153.800\r\n"}
    with PtyRig(drivers.create("radpro", "r", poll_interval_s=0.05), answers) as rig:
        rig.run(3.0, until=lambda r: len(r.readings) >= 3)
        assert [(r.quantity, r.value) for r in rig.readings[:3]] == [
            ("counts", 1500.0), ("count_rate", 153.8), ("dose_rate", 1e-6)]
        assert rig.driver.info["device_id"] == "FS2011;Rad Pro 2.0/en;0"
        assert "timeout" not in {p.kind for p in rig.problems}
    answers = {b"PTW\r\n": b"\x00CRS 1.2.4\r\n", b"SER\r\n": b"\x00SER345678\r\n", b"U\r\n": b"\x00U1\r\n",
               b"M\r\n": b"\x00M30000.00,512.25,3,7\r\n"}
    with PtyRig(drivers.create("diamentor", "dap", poll_interval_s=0.05), answers) as rig:
        rig.run(3.0, until=lambda r: len(r.readings) >= 2)
        assert [r.value for r in rig.readings[:2]] == [0.03, 0.00051225]
        assert rig.driver.info == {"firmware": "CRS 1.2.4", "serial_number": "345678", "unit": "cGy.cm2"}


def test_a_device_whose_lines_end_in_cr_alone_is_read_line_by_line():
    """A profile with terminator = "\\r": a CR at the end of a read was held back in case an LF followed, so a
    polled reply waited for bytes that never came (every request timed out, no reading at all) and a
    streamed line was read only when the next one arrived."""
    spec = {"name": "cr", "framing": {"terminator": "\r"}, "parse": {"pattern": r"^D(?P<v>\d+)$"},
            "quantity": [{"field": "v", "quantity": "dose_rate", "unit": "uSv/h"}]}
    polled = Profile.model_validate({**spec, "mode": {"kind": "poll", "request": "D", "interval_s": 0.05,
                                                      "timeout_s": 0.5}})
    with PtyRig(Generic("d", {"profile": "p.toml"}, profile=polled), {b"D\r": b"D12\r"}) as rig:
        rig.run(3.0, until=lambda r: len(r.readings) >= 3)
        assert [r.value for r in rig.readings][:3] == [1.2e-5] * 3
        assert "timeout" not in {p.kind for p in rig.problems}
    with PtyRig(Generic("d", {"profile": "p.toml"}, profile=Profile.model_validate(spec))) as rig:
        rig.send(b"D1\r", b"D2\r")
        assert [r.value for r in rig.readings] == [2e-6]  # the first after open is dropped; the second is read now
