"""``alara-edge staff``: the quarter's doses per wearer/location, JSON shape, quarter boundaries."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from agent.readings.ledger import Ledger
from agent.readings.staff import quarter_bounds
from agent.store import Store

from ..conftest import run_agent
from .conftest import BERLIN, ctx, reading, record


def test_quarter_bounds_in_local_time():
    start, end = quarter_bounds("2026Q4", BERLIN)
    assert start.isoformat() == "2026-10-01T00:00:00+02:00" and end.isoformat() == "2027-01-01T00:00:00+01:00"
    assert quarter_bounds("2027Q1", BERLIN)[0] == end


T = datetime(2026, 11, 2, 10, 0, 0, tzinfo=BERLIN).timestamp()


def _config_with(tmp_path, *batches) -> str:
    """A store holding each (device context, readings) batch, and a Berlin station's config naming it."""
    db = tmp_path / "agent.sqlite"
    store = Store.open(db)
    for context, readings in batches:
        record(store, Ledger(), context, readings)
    store.close()
    config = tmp_path / "a.toml"
    config.write_text(f'[station]\ntimezone = "Europe/Berlin"\n[store]\npath = "{db}"\n')
    return str(config)


def test_staff_json_lists_the_quarter(tmp_path):
    config = _config_with(
        tmp_path,
        (ctx(role="staff", driver="generic", body_part="lens"), [reading("dose", 0.0, T), reading("dose", 2.5e-4, T + 60)]),
        (ctx(role="room", device="door", driver="automess"),
         [reading("dose_rate", 3.6e-3, T + i, kind="rate") for i in range(3)]))
    done = run_agent("staff", "--quarter", "2026Q4", "--json", "-c", config)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["quarter"], out["from"], out["to"]) == ("2026Q4", "2026-10-01T00:00:00+02:00", "2027-01-01T00:00:00+01:00")
    wearer, room = out["rows"]
    assert (wearer["subject"], wearer["subject_kind"], wearer["body_part"], wearer["dose_mSv"]) == \
        ("B-17", "wearer", "lens", 0.25)
    # NRC-model defaults for the lens of the eye: 3.75 / 11.25 mSv per quarter, not reached
    assert [(lv["level"], lv["mSv"], lv["reached"]) for lv in wearer["levels"]] == \
        [("IL I", 3.75, False), ("IL II", 11.25, False)]
    assert "levels" not in room
    assert room["subject_kind"] == "location" and room["derived_mSv"] == pytest.approx(0.002)
    empty = json.loads(run_agent("staff", "--quarter", "2027Q1", "--json", "-c", config).stdout)
    assert empty["rows"] == []
    assert run_agent("staff", "--quarter", "2026-4", "-c", config).returncode == 2


def test_a_quarters_dose_is_given_in_mSv_as_written(tmp_path):
    # 0.12 mSv on a badge: the RSO's JSON says 0.12, not 0.12000000000000001 (Sv × 1000 in floating point)
    config = _config_with(tmp_path, (ctx(role="staff", driver="generic"),
                                     [reading("dose", 0.0, T), reading("dose", 1.2e-4, T + 60)]))
    done = run_agent("staff", "--quarter", "2026Q4", "--json", "-c", config)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"][0]["dose_mSv"] == 0.12
