"""Port handling a user notices: the simulator command, exclusive open, by-id links, new patient."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import serial

from ...conftest import REPO, agent_env


def test_simulator_command_creates_the_link_and_plays_the_default_diamentor_procedure(tmp_path):
    link = tmp_path / "by-id" / "usb-PTW_DIAMENTOR-if00"
    proc = subprocess.Popen([sys.executable, "-m", "simulator.serial", "diamentor", "--link", str(link)],
                            cwd=REPO, env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and link.is_symlink() and os.readlink(link) == ready["pty"]
        with serial.Serial(str(link), 9600, timeout=1) as port:
            port.write(b"PTW\r\n")
            assert port.readline() == b"CRS 1.2.4\r\n"
            port.write(b"U\r\n")
            assert port.readline() == b"U1\r\n"
            time.sleep(3.5)
            port.write(b"M\r\n")
            reply = port.readline().decode()
        assert reply.startswith("M") and reply.endswith("\r\n")
        assert 0 < float(reply[1:].split(",")[0]) < 30000.00  # cGy·cm²: growing, below 300 Gy·cm² this early
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0 and not link.exists()


def test_default_diamentor_scenario_passes_300_Gycm2_within_30_s():
    from simulator.serial.scenario import default_for, load

    scenario = load(default_for("diamentor"))
    dap, t = 0.0, 0.0
    while t < 30 and dap < 300:
        dap += scenario.rate_at(t) * 0.01
        t += 0.01
    assert dap >= 300 and t < 30
    for driver in ("automess", "gmc", "mightyohm", "radpro", "generic"):
        assert load(default_for(driver)).driver == driver


def test_port_is_held_exclusively_and_new_patient_starts_a_procedure(rig):
    r = rig({"driver": "diamentor", "device": {"unit": 2}, "phase": [{"duration_s": 10, "rate": 20.0}]},
            poll_interval_s=0.1, device="dap-1", dtr=False, rts=True)
    r.wait_for(lambda: r.health["readings"] > 4)
    with pytest.raises(serial.SerialException):
        serial.Serial(str(r.sim.link.link), exclusive=True)
    before = r.rows("SELECT dap_Gym2 FROM serial_procedures")[0][0]
    (uid,) = r.source.new_procedure("dap-1")
    r.wait_for(lambda: r.rows("SELECT dap_Gym2 FROM serial_procedures WHERE uid = ?", [uid])[0][0] > 0)
    first, second = r.rows("SELECT start_reason, end_reason, dap_Gym2 FROM serial_procedures ORDER BY id")
    assert first[:2] == ("first_seen", "new_patient") and first[2] >= before
    assert second[:2] == ("new_patient", None)
    # the console's gauge moves: bus messages carry the new procedure's growing total
    r.wait_for(lambda: any(topic == "reading" and p.get("procedure_id") == uid and p["dap_Gym2"] > 0
                           for topic, p in r.bus_messages))
    with pytest.raises(KeyError):
        r.source.new_procedure("no-such-meter")


def test_a_device_plugged_in_after_start_is_found_and_two_devices_run_side_by_side(tmp_path):
    """The agent starts before the adapters are plugged; a DAP meter and a staff meter then appear."""
    from agent.bus import Bus
    from agent.config import SerialPortConfig
    from agent.sources.serial import SerialSource
    from agent.store import Store
    from simulator.serial import Scenario, Simulator

    dap_link, staff_link = tmp_path / "by-id" / "dap", tmp_path / "by-id" / "staff"
    store = Store.open(tmp_path / "agent.sqlite")
    source = SerialSource([SerialPortConfig(driver="diamentor", port=str(dap_link), poll_interval_s=0.1,
                                            reconnect_max_s=0.5),
                           SerialPortConfig(driver="automess", port=str(staff_link), wearer="B-17",
                                            body_part="lens", reconnect_max_s=0.5)],
                          store, Bus(), station="room-3", timezone="Europe/Berlin")
    source.start()
    sims = []
    try:
        time.sleep(1.0)
        health = source.health()
        assert not health["dap"]["connected"] and health["dap"]["errors"]["open_failed"] >= 1
        sims = [Simulator(Scenario.model_validate({"driver": "diamentor", "device": {"unit": 2},
                                                   "phase": [{"duration_s": 10, "rate": 10.0}]}), dap_link).start(),
                Simulator(Scenario.model_validate({"driver": "automess", "device": {"interval_s": 0.1},
                                                   "phase": [{"duration_s": 10, "rate": 36.0}]}), staff_link).start()]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(h["readings"] for h in source.health().values()) < 20:
            time.sleep(0.1)
        health = source.health()
        assert health["dap"]["connected"] and health["B-17"]["connected"], health
    finally:
        source.stop()
        for sim in sims:
            sim.stop()
    (dap,) = store.db.execute("SELECT dap_Gym2 FROM serial_procedures").fetchone()
    assert dap > 0
    (dose, derived, first, last) = store.db.execute(
        "SELECT dose_Sv, derived_Sv, first_t, last_t FROM staff_dose WHERE subject = 'B-17' AND body_part = 'lens'"
    ).fetchone()
    # 36 µSv/h held constant = 0.01 µSv/s, integrated from the first to the last reading
    times = [t for (t,) in store.db.execute("SELECT t FROM serial_samples WHERE device = 'B-17' ORDER BY t")]
    assert dose == derived == pytest.approx(36e-6 / 3600 * (times[-1] - times[0]), rel=1e-9)
    store.close()


def test_readings_the_store_refuses_are_kept_and_stored_once_it_takes_them_again(rig, monkeypatch):
    """A full or failing disk for a second: the readings of that second used to be dropped (and with
    them the dose a rate meter integrates); now they wait in memory and are stored, in order, after."""
    from agent.store import Store, StoreError

    r = rig({"driver": "automess", "seed": 3, "after": "hold", "device": {"interval_s": 0.1},
             "phase": [{"duration_s": 3.0, "rate": 5.0}]}, location="room-3")
    r.wait_for(lambda: r.health["readings"] >= 5)
    working = Store.transaction

    def refusing(self):
        raise StoreError("database or disk is full")

    monkeypatch.setattr(Store, "transaction", refusing)
    time.sleep(1.0)
    monkeypatch.setattr(Store, "transaction", working)
    r.wait_until_sim(3.5)
    assert "store_error" in r.health["errors"]
    times = [t for (t,) in r.rows("SELECT t FROM serial_samples ORDER BY t")]
    assert len(times) >= 25 and max(b - a for a, b in zip(times, times[1:])) < 0.5  # no second missing


def test_a_meter_over_its_range_is_unhealthy_on_the_console_until_it_measures_again(tmp_path):
    """DIAMENTOR E4 (charge overflow): the procedure's DAP stops growing although dose is delivered, yet the
    console showed the meter healthy and its gauge green."""
    import types

    from agent.bus import Bus
    from agent.config import SerialPortConfig
    from agent.console.component import Console
    from agent.sources.serial import SerialSource
    from agent.store import Store
    from drivers.base import Problem, Reading

    store = Store.open(tmp_path / "agent.sqlite")
    try:
        source = SerialSource([SerialPortConfig(driver="diamentor", port=str(tmp_path / "no-port"))], store, Bus(),
                              station="room-3")
        (worker,) = source.workers
        worker.connected = True
        console = types.SimpleNamespace(agent=types.SimpleNamespace(serial=source))
        assert Console._serial_health(console)["ok"] is True
        worker.handle([Problem("overload", "E4: charge overflow")])
        health = Console._serial_health(console)
        assert health["ok"] is False and health["devices"][0]["overload"] is True
        worker.handle([Reading(device=worker.ctx.device, quantity="dap", value=0.02, unit="Gy.m2", kind="cumulative",
                               time=time.time())])
        assert Console._serial_health(console)["ok"] is True
    finally:
        store.close()
