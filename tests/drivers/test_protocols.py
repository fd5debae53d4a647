"""Each built-in driver on byte strings taken from its protocol description (no port involved)."""
from __future__ import annotations

import drivers
from drivers.automess import decode, encode

from .conftest import Harness


def dialogue(h: Harness, answers: dict[bytes, bytes], rounds: int, dt: float = 1.0) -> list[bytes]:
    """Answer every request the driver sends with ``answers[request]``; returns the requests seen."""
    sent = []
    for _ in range(rounds):
        request = h.tick(dt)
        if request:
            sent.append(request)
            h.feed(answers[request])
    return sent


def test_registry_knows_every_driver_and_refuses_unknown_names():
    assert drivers.names() == ["diamentor", "automess", "gmc", "mightyohm", "radpro", "generic"]
    try:
        drivers.get("vacudap")
    except KeyError as exc:
        assert "diamentor" in str(exc)
    else:
        raise AssertionError("an unknown driver name was accepted")


def test_diamentor_identifies_reads_the_unit_and_converts_dap_exactly():
    h = Harness(drivers.create("diamentor", "dap-1", poll_interval_s=0.5))
    answers = {b"PTW\r\n": b"CRS 1.2.4\r\n", b"SER\r\n": b"SER345678\r\n", b"U\r\n": b"U1\r\n",
               b"M\r\n": b"M30000.00,512.25,3,7,eeee.ee,ffff.ff,mmm,ss,34567\r\n"}
    sent = dialogue(h, answers, 5)
    assert sent[:4] == [b"PTW\r\n", b"SER\r\n", b"U\r\n", b"M\r\n"]
    assert h.driver.info == {"firmware": "CRS 1.2.4", "serial_number": "345678", "unit": "cGy.cm2"}
    dap = [r for r in h.readings if r.kind == "cumulative"]
    assert dap[0].value == 0.03 and dap[0].unit == "Gy.m2" and dap[0].native == "30000.00 cGy.cm2"
    rate = [r for r in h.readings if r.kind == "rate"][0]
    assert rate.unit == "Gy.m2/s" and rate.value == 0.00051225 and rate.status == "unverified"
    assert h.problems == []


def test_diamentor_reads_a_display_unit_changed_on_the_meter_while_the_port_stays_open():
    """The unit was asked once, at open: switched from cGy·cm² to Gy·cm² on the keypad, the same 300 Gy·cm²
    (30000.00, then 300.00 on the display) was stored as 0.0003 Gy·m², a hundredth, and taken as a reset."""
    h = Harness(drivers.create("diamentor", "dap-1", poll_interval_s=0.5))
    answers = {b"PTW\r\n": b"CRS 1.2.4\r\n", b"SER\r\n": b"SER345678\r\n", b"U\r\n": b"U1\r\n",
               b"M\r\n": b"M30000.00,0,3,7\r\n"}
    dialogue(h, answers, 4)
    answers |= {b"U\r\n": b"U2\r\n", b"M\r\n": b"M300.00,0,3,8\r\n"}
    dialogue(h, answers, 2)
    answers[b"M\r\n"] = b"M310.00,0,3,9\r\n"
    dialogue(h, answers, 2)
    dap = [r for r in h.readings if r.kind == "cumulative"]
    assert [(r.value, r.status) for r in dap] == [(0.03, "ok"), (0.03, "ok"), (0.031, "ok")]
    assert h.driver.info["unit"] == "Gy.cm2"
    assert [p.detail for p in h.problems] == [
        "display unit changed from cGy.cm2 to Gy.cm2 on the meter; readings are converted from the new one"]


def test_diamentor_units_errors_and_refused_roentgen():
    h = Harness(drivers.create("diamentor", "dap-1", {"unit": 3}))
    assert dialogue(h, {b"PTW\r\n": b"E1\r\n", b"SER\r\n": b"SER1\r\n", b"M\r\n": b"M123.4,0,0,1\r\n"}, 3)[-1] == b"M\r\n"
    assert h.readings[0].value == 0.0001234  # µGy·m² → Gy·m²
    assert [p.kind for p in h.problems] == ["device_error"] and "syntax error" in h.problems[0].detail
    r = Harness(drivers.create("diamentor", "dap-1", {"unit": 4}))
    dialogue(r, {b"PTW\r\n": b"CRS\r\n", b"SER\r\n": b"SER1\r\n", b"M\r\n": b"M5.00,0,0,1\r\n"}, 3)
    assert r.readings == [] and [p.kind for p in r.problems] == ["unit"]


def test_diamentor_flags_a_meter_reset_by_its_elapsed_time():
    h = Harness(drivers.create("diamentor", "dap-1", {"unit": 2}))
    replies = iter([b"CRS\r\n", b"SER1\r\n", b"M10.00,0,1,0\r\n", b"M12.00,0,1,30\r\n", b"M12.00,0,0,2\r\n",
                    b"M13.00,0,0,1\r\n"])
    for _ in range(6):
        if h.tick(1.0):
            h.feed(next(replies))
    # time restarted while the DAP did not grow: a reset; time restarting while DAP grows is not trusted
    assert [r.status for r in h.readings if r.kind == "cumulative"] == ["ok", "ok", "reset", "ok"]


def test_diamentor_times_out_and_carries_on():
    h = Harness(drivers.create("diamentor", "dap-1", {"unit": 2, "timeout_s": 0.5}))
    assert h.tick() == b"PTW\r\n"
    assert h.tick(0.2) == b""  # ping-pong: nothing while a request is outstanding
    assert h.tick(0.4) == b""  # timed out: a late reply would come now, before anything else is asked
    assert h.tick(0.5) == b"PTW\r\n"  # retried once the line stayed quiet
    assert [p.kind for p in h.problems] == ["timeout"]


def test_a_line_that_is_never_quiet_after_a_timeout_does_not_stop_the_polling():
    """After a timeout the next request waits for a quiet line, so that a late reply cannot be read as its
    answer; noise every 0.1 s (a bad cable, a device left streaming) must not keep the meter unasked for ever."""
    h = Harness(drivers.create("diamentor", "dap-1", {"unit": 2, "timeout_s": 0.5}))
    assert h.tick() == b"PTW\r\n"
    sent = []
    for _ in range(40):  # 4 s of a noisy line
        h.feed(b"\x00\xff", dt=0.05)
        sent.append(h.tick(0.05))
    assert sent.count(b"PTW\r\n") >= 1  # asked again despite the noise, 2 s (4 quiet periods) after the timeout
    assert "timeout" in [p.kind for p in h.problems]


def test_automess_frames_from_the_manual_and_resync_after_noise():
    assert encode(20, 1.0) == bytes.fromhex("02 14 00 40 01 55")
    assert encode(20, 0.1) == bytes.fromhex("02 14 66 66 FD E9")
    assert encode(20, 12.34) == bytes.fromhex("02 14 B8 62 04 CA")
    assert decode(bytes.fromhex("02 14 00 40 01 55")) == (20, 1.0)
    h = Harness(drivers.create("automess", "survey"))
    stream = b"\x02\x02\x99" + encode(20, 1.0) + encode(20, 12.34)[:4]
    h.feed(stream)
    h.feed(encode(20, 12.34)[4:] + encode(17, 50.0))
    values = [(r.quantity, r.value, r.unit) for r in h.readings]
    assert values == [("dose_rate", 1e-6, "Sv/h"), ("dose_rate", 1.233984375e-05, "Sv/h"),
                      ("count_rate", 3000.0, "count/min")]


def test_automess_rejects_a_flipped_bit():
    h = Harness(drivers.create("automess", "survey"))
    frame = bytearray(encode(20, 2.0))
    frame[3] ^= 0x04
    h.feed(encode(20, 1.0))
    h.feed(bytes(frame) + encode(20, 3.0))
    assert [r.value for r in h.readings] == [1e-6, 3e-6]
    assert "checksum" in [p.kind for p in h.problems]


def silenced(h: Harness) -> bytes:
    """A GMC driver's first request turns a heartbeat off (no reply); the next goes once the line was quiet."""
    assert h.tick() == b"<HEARTBEAT0>>"
    assert h.tick(0.45) == b""
    return h.tick(0.05)


def test_gmc_reads_the_model_then_cpm_of_the_right_width():
    h = Harness(drivers.create("gmc", "room", {"cpm_per_usv_h": 153.8}))
    assert silenced(h) == b"<GETVER>>"
    h.feed(b"GMC-320Re 5.73")
    assert h.tick(0.05) == b""  # the version reply ends when the line goes idle
    assert h.tick(0.1) == b"<GETCPM>>"
    h.feed(b"\x00")
    h.feed(b"\x1c")
    assert [(r.quantity, r.value) for r in h.readings][0] == ("count_rate", 28.0)
    assert h.readings[1].status == "derived" and h.readings[1].unit == "Sv/h"
    g = Harness(drivers.create("gmc", "room"))
    silenced(g)
    g.feed(b"GMC-500+Re 1.22")
    g.tick(0.2)
    g.feed(b"\x00\x00\x01\x00")
    assert g.readings[0].value == 256.0


def test_gmc_discards_stale_bytes_before_a_command():
    h = Harness(drivers.create("gmc", "room", {"model": "GMC-300"}))
    silenced(h)
    h.feed(b"GMC-300Re 4.54")
    h.tick(0.2)
    h.feed(b"\x00\x10")  # CPM 16
    h.feed(b"\x00\x07")  # unsolicited (a heartbeat left on)
    assert h.tick(1.0) == b"<GETCPM>>"
    h.feed(b"\x00\x20")
    assert [r.value for r in h.readings] == [16.0, 32.0]
    assert "garbage" in [p.kind for p in h.problems]


def _mightyohm() -> Harness:
    """A MightyOhm driver that takes the very first line (no partial line to drop at open)."""
    h = Harness(drivers.create("mightyohm", "geiger"))
    h.driver.framer.reset(drop_first=False)
    return h


def test_mightyohm_lines_banner_and_fork_variant():
    h = _mightyohm()
    h.feed(b"mightyohm.com Geiger Counter 1.00\r\nhttp://mightyohm.com/geiger\r\n")
    h.feed(b"CPS, 0, CPM, 13, uSv/hr, 0.07, SLOW\r\nCPS, 1, CP")
    h.feed(b"M, 7*\r\n")
    got = [(r.quantity, r.value, r.status) for r in h.readings]
    assert got == [("count_rate", 13.0, "ok"), ("dose_rate", 7e-08, "ok"), ("count_rate", 7.0, "overload")]
    assert h.problems == []
    assert h.driver.info["banner"] == "mightyohm.com Geiger Counter 1.00"
    # a data line with one bit flipped is garbage, not a second banner
    h.feed(b"CQS, 9, CPM, 540, uSv/hr, 3.07, SLOW\r\nlooks like text\r\n")
    assert [p.kind for p in h.problems] == ["garbage", "garbage"]
    assert h.driver.info["banner"] == "mightyohm.com Geiger Counter 1.00"


def test_mightyohm_line_whose_dose_rate_contradicts_its_count_is_not_a_reading():
    # one damaged digit in a staff Geiger counter's line was integrated as 27.8 mSv for its wearer
    # (a critical investigational level): the firmware's µSv/h is CPM × 0.0057, so the line contradicts itself
    h = _mightyohm()
    h.feed(b"CPS, 1, CPM, 60, uSv/hr, 0.34, SLOW\r\nCPS, 1, CPM, 60, uSv/hr, 99999999.34, SLOW\r\n")
    h.feed(b"CPS, 1, CPM, 100000000000000000000000000000000000000000060, uSv/hr, 0.34, SLOW\r\n")
    h.feed(b"CPS, 9, CPM, 540, uSv/hr, 3.07, SLOW\r\nCPS, 99, CPM, 12000, uSv/hr, 68.40, FAST\r\n")
    got = [(r.quantity, r.value) for r in h.readings]
    assert got == [("count_rate", 60.0), ("dose_rate", 3.4e-07), ("count_rate", 540.0), ("dose_rate", 3.07e-06),
                   ("count_rate", 12000.0), ("dose_rate", 6.84e-05)]
    assert [p.kind for p in h.problems] == ["implausible", "implausible"]


def test_radpro_counter_rate_and_sensitivity():
    h = Harness(drivers.create("radpro", "radpro"))
    answers = {b"GET deviceId\r\n": b"OK FS2011 (STM32F051C8);Rad Pro 2.0/en;b57\r\n",
               b"GET tubeSensitivity\r\n": b"OK 153.800\r\n", b"GET tubePulseCount\r\n": b"OK 1500\r\n",
               b"GET tubeRate\r\n": b"OK 153.800\n"}
    dialogue(h, answers, 4)
    counts, rate, dose_rate = h.readings
    assert (counts.quantity, counts.value, counts.wrap, counts.since_reset) == ("counts", 1500.0, 2 ** 32, False)
    assert (rate.value, rate.unit) == (153.8, "count/min")
    assert dose_rate.value == 1e-06 and dose_rate.unit == "Sv/h"
    h.tick(1.0)
    h.feed(b"ERROR\r\n")
    assert h.problems[-1].kind == "device_error"


def test_gmc_a_reply_that_comes_late_is_not_read_as_the_start_of_the_next():
    """GMC-500 (4-byte CPM, no framing): one byte of 300 CPM in time, the other three after the timeout.
    They are discarded (stale), not taken with the next reply's first byte for 76,800 CPM."""
    h = Harness(drivers.create("gmc", "room", {"model": "GMC-500", "timeout_s": 1.0}))
    reply = bytes.fromhex("0000012C")
    assert silenced(h) == b"<GETVER>>"
    h.feed(b"GMC-500+Re 1.22")
    assert h.tick(0.2) == b"<GETCPM>>"
    h.feed(reply, 0.01)
    assert h.tick(1.0) == b"<GETCPM>>"
    h.feed(reply[:1], 0.3)  # one byte in time...
    assert h.tick(0.75) == b""  # ...timed out: the line must go quiet first
    h.feed(reply[1:], 0.2)  # the rest, late
    assert h.tick(0.2) == b""  # still settling (bytes came 0.2 s ago)
    assert h.tick(0.4) == b"<GETCPM>>"  # quiet for 0.6 s: the stale bytes are dropped, the next request goes
    h.feed(reply, 0.01)
    assert [r.value for r in h.readings if r.quantity == "count_rate"] == [300.0, 300.0]
    assert {"timeout", "garbage"} <= {p.kind for p in h.problems}


def test_diamentor_charge_overflow_is_an_overload_not_a_plain_device_error():
    """E4/E5: the chamber saturates and the DAP stops growing while dose is still delivered."""
    h = Harness(drivers.create("diamentor", "dap-1", {"unit": 2}))
    assert h.tick() == b"PTW\r\n"
    h.feed(b"E4\r\n")
    h.feed(b"", 0.0)
    assert [(p.kind, "not being measured" in p.detail) for p in h.problems] == [("overload", True)]
