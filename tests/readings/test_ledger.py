"""The ledger: procedures of a DAP meter, staff quarters in local time, aggregates, retention, hooks."""
from __future__ import annotations

import json
from datetime import datetime

from agent.readings.ledger import Ledger, quarter_of

from .conftest import BERLIN, ctx, plain, reading, record


def procedures(store):
    rows = store.db.execute("SELECT uid, start_reason, end_reason, dap_Gym2 FROM serial_procedures ORDER BY id")
    return [(plain(uid), *rest) for uid, *rest in rows.fetchall()]


def test_dap_meter_procedure_grows_calls_the_hook_and_resets(store, hooks):
    ledger, calls = hooks
    c = ctx()
    out = record(store, ledger, c, [reading("dap", 0.0100, 1.0), reading("dap", 0.0001, 1.0, kind="rate",
                                                                          unit="Gy.m2/s")])
    assert plain(out.gauge["procedure_id"]) == "room-3:dev:1" and out.gauge["dap_Gym2"] == 0.01
    record(store, ledger, c, [reading("dap", 0.0300, 2.0)])
    record(store, ledger, c, [reading("dap", 0.0300, 3.0)])  # unchanged: no hook call
    out = record(store, ledger, c, [reading("dap", 0.0050, 4.0)])  # the meter was reset...
    assert out.enqueued == 0 and plain(out.gauge["procedure_id"]) == "room-3:dev:1"  # ...held until confirmed
    out = record(store, ledger, c, [reading("dap", 0.0060, 5.0)])  # confirmed: a new procedure from here
    assert [v for _, _, v, _ in calls["cumulative"]] == [0.01, 0.03, 0.006]
    assert (plain(calls["cumulative"][1][0]), *calls["cumulative"][1][1:]) == ("room-3:dev:1", "dap", 0.03, "Gy.m2")
    assert out.enqueued == 1 and plain(out.gauge["procedure_id"]) == "room-3:dev:2"
    assert procedures(store) == [("room-3:dev:1", "first_seen", "meter_reset", 0.03),
                                 ("room-3:dev:2", "meter_reset", None, 0.006)]
    (body,) = [json.loads(b) for (b,) in store.db.execute("SELECT body FROM outbox WHERE kind = 'reading'")]
    assert body["type"] == "procedure" and body["dap_Gym2"] == 0.03 and plain(body["procedure_id"]) == "room-3:dev:1"


def test_hook_alerts_are_returned_and_a_failing_hook_does_not_lose_readings(store, hooks):
    ledger, _ = hooks
    out = record(store, ledger, ctx(), [reading("dap", 0.031, 1.0)])
    assert out.alerts == ["alert@0.031"]

    def broken(tx, *args):
        tx.execute("INSERT INTO serial_devices (device, driver, port, role, updated_at) VALUES ('x','x','x','x','x')")
        raise RuntimeError("checks bug")

    out = record(store, Ledger(on_cumulative=broken), ctx(), [reading("dap", 0.032, 2.0)])
    assert out.alerts == []
    assert store.db.execute("SELECT COUNT(*) FROM serial_samples").fetchone()[0] == 2
    assert store.db.execute("SELECT COUNT(*) FROM serial_devices WHERE device = 'x'").fetchone()[0] == 0


def test_new_patient_counts_from_the_meters_present_value(store, hooks):
    ledger, calls = hooks
    c = ctx()
    record(store, ledger, c, [reading("dap", 0.0200, 1.0)])
    with store.transaction() as tx:
        uid = ledger.new_procedure(tx, c, 2.0)
    record(store, ledger, c, [reading("dap", 0.0250, 3.0)])
    assert plain(uid) == "room-3:dev:2"
    assert procedures(store)[1] == ("room-3:dev:2", "new_patient", None, 0.005)  # exactly, not 0.005000000000000001
    assert calls["cumulative"][-1][0] == uid


def test_restart_does_not_count_a_dose_twice(store, hooks):
    ledger, _ = hooks
    c = ctx(role="room", driver="radpro")
    record(store, ledger, c, [reading("counts", 1000.0, 1.0, since_reset=False)])
    record(store, ledger, c, [reading("counts", 1500.0, 2.0, since_reset=False)])
    fresh = Ledger()  # the agent restarted: state comes from the store
    record(store, fresh, c, [reading("counts", 1500.0, 3.0, since_reset=False),
                             reading("counts", 1600.0, 4.0, since_reset=False)])
    credited = [c for (c,) in store.db.execute("SELECT credited FROM serial_samples ORDER BY t")]
    assert credited == [0.0, 500.0, 0.0, 100.0]


def test_quarters_are_local_calendar_quarters():
    # 2026-12-31 23:30 UTC is already 2027-01-01 00:30 in Berlin
    t = datetime.fromisoformat("2026-12-31T23:30:00+00:00").timestamp()
    assert quarter_of(t, BERLIN) == "2027Q1"
    assert quarter_of(t - 3600, BERLIN) == "2026Q4"
    # 2026-03-31 22:30 UTC = 2026-04-01 00:30 CEST (summer time)
    assert quarter_of(datetime.fromisoformat("2026-03-31T22:30:00+00:00").timestamp(), BERLIN) == "2026Q2"


def test_staff_dose_integrates_rate_per_quarter_and_calls_the_hook(store, hooks):
    ledger, calls = hooks
    c = ctx(role="staff", driver="automess", max_gap_s=10.0)
    end_q4 = datetime(2026, 12, 31, 23, 59, 58, tzinfo=BERLIN).timestamp()
    rate = 3.6e-3  # Sv/h = 1 µSv/s
    record(store, ledger, c, [reading("dose_rate", rate, end_q4 + i, kind="rate") for i in range(5)])
    rows = store.db.execute("SELECT subject, body_part, quarter, dose_Sv, derived_Sv FROM staff_dose"
                            " ORDER BY quarter").fetchall()
    assert [(s, b, q) for s, b, q, _, _ in rows] == [("B-17", "whole_body", "2026Q4"), ("B-17", "whole_body", "2027Q1")]
    assert abs(rows[0][3] - 2e-6) < 1e-15 and abs(rows[1][3] - 2e-6) < 1e-15 and rows[0][3] == rows[0][4]
    assert [(q, round(mSv, 9)) for _, _, q, mSv in calls["staff"]] == [("2026Q4", 0.002), ("2027Q1", 0.002)]


def test_one_damaged_dose_rate_reading_is_not_integrated_into_the_wearers_quarter(store, hooks, capsys):
    """1 µSv/s for 10 s, with one line read as 100 Sv/h in the middle (a damaged line on a rate meter
    without checksum): the quarter holds 10 µSv, not 28 mSv and an investigational level."""
    ledger, calls = hooks
    c = ctx(role="staff", driver="automess", max_gap_s=10.0)
    t0 = datetime(2026, 11, 2, 10, 0, 0, tzinfo=BERLIN).timestamp()
    rates = [3.6e-3] * 11
    rates[5] = 100.0
    record(store, ledger, c, [reading("dose_rate", rate, t0 + i, kind="rate") for i, rate in enumerate(rates)])
    ((dose,),) = store.db.execute("SELECT dose_Sv FROM staff_dose").fetchall()
    assert abs(dose - 1e-5) < 1e-15
    # kept for inspection, marked, and left out of what is summarised for the central site
    assert store.db.execute("SELECT value, status FROM serial_samples WHERE status = 'implausible'").fetchall() == \
        [(100.0, "implausible")]
    assert "serial_glitch" in capsys.readouterr().out


def test_cumulative_dose_is_not_also_integrated(store, hooks):
    ledger, _ = hooks
    c = ctx(role="staff", driver="generic")
    record(store, ledger, c, [reading("dose", 1e-6, 100.0), reading("dose_rate", 1.0, 100.0, kind="rate")])
    record(store, ledger, c, [reading("dose", 3e-6, 101.0), reading("dose_rate", 1.0, 101.0, kind="rate")])
    (dose,) = store.db.execute("SELECT dose_Sv FROM staff_dose").fetchone()
    assert dose == 3e-6  # first value counts from the dosimeter's reset; the rate adds nothing


def test_minutes_are_queued_once_without_raw_samples_and_old_samples_are_pruned(store, hooks):
    ledger, _ = hooks
    c = ctx(role="room", driver="automess")
    t0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=BERLIN).timestamp()
    record(store, ledger, c, [reading("dose_rate", v * 1e-6, t0 + i, kind="rate", raw=b"\x02\x14")
                              for i, v in enumerate([1, 2, 3])])
    with store.transaction() as tx:
        assert ledger.flush_minutes(tx, "room-3", t0 + 30) == 0  # the minute is not over
        assert ledger.flush_minutes(tx, "room-3", t0 + 70) == 1
        assert ledger.flush_minutes(tx, "room-3", t0 + 200) == 0  # queued once
    (body,) = [json.loads(b) for (b,) in store.db.execute("SELECT body FROM outbox")]
    assert body["type"] == "minute" and body["n"] == 3 and body["max"] == 3e-6 and body["minute"] == "2026-11-23T09:00Z"
    assert "raw" not in body and body["mean"] == (1e-6 + 2e-6 + 3e-6) / 3
    with store.transaction() as tx:
        assert Ledger.prune(tx, "dev", t0 + 1.5) == 2
    assert store.db.execute("SELECT COUNT(*) FROM serial_samples").fetchone()[0] == 1
    assert store.db.execute("SELECT COUNT(*) FROM serial_minutes").fetchone()[0] == 1


def kerma(store):
    return [k for (k,) in store.db.execute("SELECT air_kerma_Gy FROM serial_procedures ORDER BY id")]


def test_a_lifetime_counter_meters_ka_r_counts_from_its_own_first_value_not_from_the_dap(store, hooks):
    """DAP and Ka,r lifetime counters on one line (10 Gy·cm², 8 Gy so far): 10 mGy delivered is 10 mGy,
    not 8 Gy less the DAP's value."""
    ledger, _ = hooks
    c = ctx(driver="generic")
    lifetime = dict(since_reset=False)
    record(store, ledger, c, [reading("dap", 0.001, 1.0, **lifetime), reading("air_kerma", 8.0, 1.0, **lifetime)])
    record(store, ledger, c, [reading("dap", 0.002, 2.0, **lifetime), reading("air_kerma", 8.01, 2.0, **lifetime)])
    assert kerma(store) == [0.01]
    assert procedures(store)[0][3] == 0.001


def test_a_wrap_around_keeps_adding_to_the_procedure(store, hooks):
    """A Ka,r counter that wraps at 10 Gy: 6, 8, then 1 (= 11 Gy) — the procedure holds 5 Gy delivered."""
    ledger, calls = hooks
    c = ctx(driver="generic")
    for t, value in enumerate((6.0, 8.0, 1.0), start=1):
        record(store, ledger, c, [reading("air_kerma", value, 10.0 * t, wrap=10.0)])
    assert kerma(store) == [11.0]  # a since-reset counter: 6 Gy at the first reading, then +2, then +3
    assert [v for _, q, v, _ in calls["cumulative"] if q == "air_kerma"] == [6.0, 8.0, 11.0]


def test_a_threshold_reached_exactly_in_steps_is_reached(store, hooks):
    """New patient at 7734 cGy·cm², the meter then reaches 37734 cGy·cm²: exactly 300 Gy·cm² (0.03 Gy·m²)."""
    ledger, calls = hooks
    c = ctx()
    record(store, ledger, c, [reading("dap", 0.007734, 1.0)])
    with store.transaction() as tx:
        ledger.new_procedure(tx, c, 2.0)
    record(store, ledger, c, [reading("dap", 0.027734, 3.0)])
    record(store, ledger, c, [reading("dap", 0.037734, 4.0)])
    assert calls["cumulative"][-1][2] == 0.03


def test_a_staff_quarter_reaching_an_investigational_level_exactly_holds_it_exactly(store, hooks):
    """58 µSv, then 1,250 µSv on a cumulative badge: the quarter holds 1.25 mSv, so `alara-edge staff`
    and the alert agree that IL I (1.25 mSv) is reached."""
    ledger, calls = hooks
    c = ctx(role="staff", driver="automess")
    record(store, ledger, c, [reading("dose", 58e-6, 1.0)])
    record(store, ledger, c, [reading("dose", 1250e-6, 2.0)])
    assert [d for (d,) in store.db.execute("SELECT dose_Sv FROM staff_dose")] == [0.00125]


def test_one_corrupt_reading_that_looks_like_a_reset_neither_splits_the_procedure_nor_counts_twice(store, hooks):
    """A DIAMENTOR telegram has no checksum: a flipped or lost digit reads as a drop (35000 -> 3500 cGy·cm²)
    and the next telegram is back at 35000. One procedure, 350 Gy·cm², and the glitch is logged."""
    ledger, calls = hooks
    c = ctx()
    for t, value in enumerate((0.030, 0.035, 0.0035, 0.035, 0.036), start=1):
        record(store, ledger, c, [reading("dap", value, float(t))])
    assert procedures(store) == [("room-3:dev:1", "first_seen", None, 0.036)]
    assert [v for _, _, v, _ in calls["cumulative"]] == [0.03, 0.035, 0.036]
    assert sum(c for (c,) in store.db.execute("SELECT credited FROM serial_samples")) == 0.036


def test_one_corrupt_reading_that_jumps_up_raises_nothing_and_counts_nothing(store, hooks, capsys):
    """20000 cGy·cm², then one telegram with a digit flipped to 80000, then 20010, 20020 (polled every
    0.3 s): 600 Gy·cm² in 0.3 s cannot be. Taken at once it raised the SRDL (critical), and the true values
    that followed looked like a meter reset: a second procedure, the DAP counted twice."""
    ledger, calls = hooks
    c = ctx()
    for t, value in ((0.0, 0.02), (0.3, 0.08), (0.6, 0.02001), (0.9, 0.02002)):
        record(store, ledger, c, [reading("dap", value, 1000.0 + t)])
    assert procedures(store) == [("room-3:dev:1", "first_seen", None, 0.02002)]
    assert max(v for _, _, v, _ in calls["cumulative"]) == 0.02002  # the hooks (thresholds) never saw 0.08
    assert "serial_glitch" in capsys.readouterr().out


def test_a_jump_the_next_reading_confirms_is_counted_one_reading_later(store, hooks):
    ledger, calls = hooks
    c = ctx()
    for t, value in ((0.0, 0.02), (0.3, 0.06), (0.6, 0.0601)):  # a real jump (a mis-set meter, a long run unseen)
        record(store, ledger, c, [reading("dap", value, 1000.0 + t)])
    assert procedures(store) == [("room-3:dev:1", "first_seen", None, 0.0601)]
    assert [v for _, _, v, _ in calls["cumulative"]] == [0.02, 0.0601]


def test_a_small_flipped_digit_that_passed_is_taken_back_as_the_meter_moves_on(store, hooks):
    """20000 → 20800 cGy·cm² (8 Gy·cm² in 0.3 s: possible) → 20010, 20020 …: the true values fall back between
    the two; they credit nothing until the meter passes 20800, so the procedure ends with the true total and
    is not split as if the meter had been reset."""
    ledger, calls = hooks
    c = ctx()
    values = [0.02, 0.0208, 0.02001, 0.02002, 0.0205, 0.021]
    for n, value in enumerate(values):
        record(store, ledger, c, [reading("dap", value, 1000.0 + 0.3 * n)])
    assert procedures(store) == [("room-3:dev:1", "first_seen", None, 0.021)]


def test_a_dosimeter_given_to_another_wearer_does_not_bring_the_first_wearers_dose(store, hooks):
    """The device id defaults to the wearer: the same dosimeter on the same port under wearer W5 was a new
    device, and its whole reading since reset (W4's 1 mSv) was credited to W5 as well."""
    ledger, _ = hooks
    w4 = ctx(role="staff", driver="generic", device="W4", subject="W4")
    record(store, ledger, w4, [reading("dose", 0.9e-3, 100.0)])
    record(store, ledger, w4, [reading("dose", 1.0e-3, 101.0)])
    w5 = ctx(role="staff", driver="generic", device="W5", subject="W5")  # the configuration now names W5
    record(store, ledger, w5, [reading("dose", 1.0e-3, 200.0)])
    record(store, ledger, w5, [reading("dose", 1.01e-3, 201.0)])
    doses = dict(store.db.execute("SELECT subject, dose_Sv FROM staff_dose").fetchall())
    assert doses["W4"] == 1.0e-3 and abs(doses["W5"] - 1e-5) < 1e-15


def test_utc_iso_rounds_up_into_the_next_second():
    from agent.readings.ledger import utc_iso

    # a procedure's ended_at must not come out almost a second early (before its started_at)
    assert utc_iso(1700000000.9996) == "2023-11-14T22:13:21.000Z"
    assert utc_iso(1700000000.2) == "2023-11-14T22:13:20.200Z"
    assert utc_iso(1700000000.0004) == "2023-11-14T22:13:20.000Z"
    assert utc_iso(1700000000.9996) > utc_iso(1700000000.2)


def test_two_flipped_digits_in_a_row_do_not_split_the_procedure(store, hooks):
    """An idle meter at 5000.19 cGy·cm² on a noisy line: 5400.19 (flip, passes), 5000.19 …, 5800.19 (another
    flip, passes), 5000.19, 5000.19.  The second flip moved 'the value before the overshoot' up to 5400.19,
    so the true 5000.19 looked like a meter reset: the procedure was split and its 50 Gy·cm² counted again
    in a second one (seen with the simulator's bit_flip fault on a DIAMENTOR)."""
    ledger, calls = hooks
    c = ctx()
    values = [0.00500019, 0.00540019, 0.00500019, 0.00500019, 0.00580019, 0.00500019, 0.00500019, 0.00500019,
              0.0059, 0.006]
    for n, value in enumerate(values):
        record(store, ledger, c, [reading("dap", value, 1000.0 + 0.5 * n)])
    ((uid, start, end, dap),) = procedures(store)
    assert (uid, start, end) == ("room-3:dev:1", "first_seen", None)
    assert dap < 0.0065  # the meter's 0.006, plus at most the overshoots: never a second 0.005


def test_a_restored_or_replaced_store_never_gives_a_procedure_an_id_already_sent(tmp_path, store, hooks):
    """A store restored from a backup, or a replacement box's new one, numbers its procedures from the same
    row ids again: the ids (and so the event ids of the procedure's reading and alerts) must still differ,
    or the central site drops the new procedure's messages as duplicates of the earlier one's."""
    from agent.store import Store

    ledger, _ = hooks
    other = Store.open(tmp_path / "replacement.sqlite")
    try:
        for s in (store, other):
            record(s, ledger, ctx(), [reading("dap", 0.031, 1.0)])
            record(s, ledger, ctx(), [reading("dap", 0.001, 2.0)])  # a meter reset, confirmed next: the
            record(s, ledger, ctx(), [reading("dap", 0.002, 3.0)])  # first procedure is closed and queued
        sent = [{json.loads(b)["procedure_id"]: e for e, b in s.db.execute(
            "SELECT event_id, body FROM outbox WHERE kind = 'reading'")} for s in (store, other)]
    finally:
        other.close()
    assert len(sent[0]) == len(sent[1]) == 1
    assert sent[0].keys() != sent[1].keys() and set(sent[0].values()).isdisjoint(sent[1].values())
