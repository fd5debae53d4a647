"""Every driver against its simulator over a real pseudo-terminal, through every fault the field shows.

Each scenario runs a few seconds with fast frame/poll intervals: split writes, garbage, flipped bits,
an unplug with re-enumeration (a new /dev/pts behind the same by-id link) and a counter reset.
"""
from __future__ import annotations

import pytest

from .conftest import PROFILES

FAULTS = [
    {"at_s": 0.6, "kind": "split_writes", "duration_s": 1.0},
    {"at_s": 1.8, "kind": "garbage", "count": 2, "bytes": 40},
    {"at_s": 2.3, "kind": "bit_flip", "count": 2},
    {"at_s": 2.9, "kind": "unplug", "duration_s": 1.0},
    {"at_s": 4.6, "kind": "counter_reset"},
]
END_S = 6.0
LINE_NOISE = {"garbage", "unexpected", "implausible", "checksum", "partial", "timeout"}


def scenario(driver: str, rate: float, **device) -> dict:
    return {"driver": driver, "seed": 11, "after": "hold", "device": {"interval_s": 0.1, **device},
            "phase": [{"duration_s": END_S, "rate": rate}], "fault": FAULTS}


def common_checks(rig, expect_problems: set[str]) -> None:
    rig.wait_until_sim(END_S + 0.6)
    health = rig.health
    assert health["connected"], health
    assert health["reconnects"] >= 1, health  # the unplug was noticed and survived
    assert health["resolved"] == rig.sim.link.slave_name  # found again on the new pty
    assert expect_problems <= set(health["errors"]), health["errors"]
    assert LINE_NOISE & set(health["errors"]), health["errors"]  # the injected noise was seen and counted
    assert "internal" not in health["errors"]
    replug = next(t for t, what in rig.sim.events if what.startswith("replugged"))
    after = rig.rows("SELECT COUNT(*) FROM serial_samples WHERE t > ?", [rig.sim.t0_wall + replug])[0][0]
    assert after > 0, "no readings after the device came back"
    negative = rig.rows("SELECT COUNT(*) FROM serial_samples WHERE value < 0 OR credited < 0")[0][0]
    assert negative == 0


def test_diamentor_faults_reset_starts_a_new_procedure(rig):
    r = rig(scenario("diamentor", 50.0, unit=1), poll_interval_s=0.1)  # 50 Gy·cm²/s
    common_checks(r, {"disconnected"})
    procedures = r.rows("SELECT start_reason, end_reason, dap_Gym2 FROM serial_procedures ORDER BY id")
    assert [p[:2] for p in procedures] == [("first_seen", "meter_reset"), ("meter_reset", None)]
    truth = r.sim.device.truth()
    # the first procedure holds what the meter showed just before its reset (at most one poll short)
    first = procedures[0][2]
    assert 4.6 * 50e-4 - 0.5 * 50e-4 <= first <= 4.6 * 50e-4 + 1e-9
    # never more than the meter measured, never negative, never counted twice across the unplug
    credited = r.rows("SELECT SUM(credited) FROM serial_samples WHERE quantity = 'dap' AND kind = 'cumulative'")[0][0]
    assert credited <= truth["dap_total_Gycm2"] * 1e-4 + 1e-9
    assert credited == pytest.approx(first + procedures[1][2], abs=1e-12)


def test_automess_faults(rig):
    r = rig(scenario("automess", 12.34))
    common_checks(r, {"checksum", "disconnected"})
    values = {v for (v,) in r.rows("SELECT DISTINCT value FROM serial_samples")}
    assert values == {1.233984375e-05}  # a flipped bit never became a reading


def test_gmc_faults(rig):
    r = rig(scenario("gmc", 30.0, version="GMC-500+Re 1.22"), poll_interval_s=0.1, max_cpm=100_000)
    common_checks(r, {"disconnected"})
    assert r.health["info"]["version"] == "GMC-500+Re 1.22"
    cpm = [v for (v,) in r.rows("SELECT value FROM serial_samples WHERE quantity = 'count_rate'")]
    # no checksum in this protocol: a flipped bit is caught only when it makes the value implausible
    assert len(cpm) > 20 and max(cpm) <= 100_000


def test_mightyohm_faults(rig):
    r = rig(scenario("mightyohm", 20.0))
    common_checks(r, {"garbage", "disconnected"})
    rates = r.rows("SELECT COUNT(*) FROM serial_samples WHERE quantity = 'dose_rate'")[0][0]
    assert rates > 20


def test_radpro_faults_wrap_and_reset_never_double(rig):
    r = rig(scenario("radpro", 200.0, start_count=2 ** 32 - 400), poll_interval_s=0.1)
    common_checks(r, {"disconnected"})
    values = [v for (v,) in r.rows("SELECT value FROM serial_samples WHERE quantity = 'counts' ORDER BY t")]
    assert max(values) > 2 ** 32 - 400 and min(values) < 1000  # it wrapped (and/or was reset)
    credited = r.rows("SELECT SUM(credited) FROM serial_samples WHERE quantity = 'counts'")[0][0]
    assert 0 < credited <= r.sim.device.truth()["counts_total"]


def test_generic_profile_faults(rig):
    r = rig(scenario("generic", 20.0), profile=str(PROFILES / "bgeigie-nano.toml"))
    common_checks(r, {"disconnected"})
    assert {"checksum", "garbage"} & set(r.health["errors"])
    credited = r.rows("SELECT SUM(credited) FROM serial_samples WHERE quantity = 'counts'")[0][0]
    assert 0 < credited <= r.sim.device.truth()["counts_total"]


def test_garbage_for_a_while_logs_its_start_a_summary_and_its_end(rig, monkeypatch):
    """A line that sends garbage for hours: one line when it starts, at most one a minute while it
    lasts, and one when readings come without it again (here the minute is 1 s)."""
    from structlog.testing import capture_logs

    import agent.sources.serial

    monkeypatch.setattr(agent.sources.serial, "SUMMARY_EVERY_S", 1.0)
    garbage = [{"at_s": 0.5 + 0.1 * n, "kind": "garbage", "count": 1, "bytes": 40} for n in range(15)]
    with capture_logs() as logs:
        r = rig({"driver": "mightyohm", "seed": 11, "after": "hold", "device": {"interval_s": 0.1},
                 "phase": [{"duration_s": 5.0, "rate": 20.0}], "fault": garbage})
        r.wait_until_sim(4.5)
    garbage_lines = [e for e in logs if e.get("kind") == "garbage"]
    assert [e["event"] for e in garbage_lines][0] == "serial_problem"
    assert 2 <= len(garbage_lines) <= 4, garbage_lines  # start, a summary, the end: not one per bad line
    ended = garbage_lines[-1]
    assert ended["event"] == "serial_problem_ended" and ended["count"] >= 10 and ended["device"]
