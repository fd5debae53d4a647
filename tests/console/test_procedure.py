"""The "new patient" control and the live fluoroscopy gauge fed by a simulated DAP meter on a pty."""
import json
import subprocess
import sys
from decimal import Decimal

from playwright.sync_api import expect

from tests.conftest import REPO, agent_env
from tests.console.conftest import screenshot


def test_new_patient_without_a_dap_meter_says_so(station, page):
    s = station()
    csrf = s.request("/api/state")[2]["csrf"]
    status, _, answer = s.request("/api/procedure/new", "POST", {}, {"X-CSRF-Token": csrf})
    assert status == 409 and "no DAP meter" in answer["error"]
    page.goto(s.url + "/")
    page.wait_for_selector("#live.on")
    page.click("#new-patient")
    expect(page.locator("#procedure-message")).to_contain_text("no DAP meter", timeout=20_000)


def test_a_click_before_the_state_has_arrived_waits_for_it(station, page):
    """The page's CSRF token comes with its state: a button pressed before then must not fail."""
    s = station()
    page.add_init_script("""{ const fetch = window.fetch;  // the state arrives a second late
      window.fetch = (url, options) => String(url).includes("/api/state")
        ? new Promise((done) => setTimeout(done, 1000)).then(() => fetch(url, options)) : fetch(url, options); }""")
    page.goto(s.url + "/")
    page.click("#new-patient")  # at once, while the state is still on its way
    expect(page.locator("#procedure-message")).to_contain_text("no DAP meter", timeout=20_000)
    assert page.is_visible("#live.on")


FAST_PROCEDURE = """
driver = "diamentor"
description = "fluoroscopy passing 300 and 400 Gy·cm² within 3 s"
seed = 1
after = "idle"

[device]
unit = 1
serial = "000123"

[[phase]]
duration_s = 3
rate = 150.0
"""


def test_simulated_dap_meter_moves_the_gauge_and_new_patient_resets_it(station, page, tmp_path):
    link = tmp_path / "serial" / "by-id" / "usb-SIM_DIAMENTOR-if00-port0"
    link.parent.mkdir(parents=True)
    scenario = tmp_path / "fast.toml"
    scenario.write_text(FAST_PROCEDURE)
    sim = subprocess.Popen([sys.executable, "-m", "simulator.serial", "diamentor", "--link", str(link),
                            "--scenario", str(scenario)], cwd=REPO, env=agent_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(sim.stdout.readline())["event"] == "ready"
        s = station(serial=[{"driver": "diamentor", "port": str(link), "device": "dap-1", "poll_interval_s": 0.1}])
        page.goto(s.url + "/")
        page.wait_for_selector("#live.on")
        dap = page.locator(".gauge[data-quantity=dap_Gym2]")
        expect(dap).to_be_visible()
        expect(dap.locator(".marks")).to_have_text("1st notification 300 · SRDL 500")
        banner = page.locator("#banner")
        expect(banner).to_contain_text("first notification")  # the checks' fluoro_threshold, live
        expect(dap).to_have_class("gauge warning")
        page.wait_for_timeout(1500)  # the 3 s procedure is over; the meter idles
        db = s.store.reader()
        (total_Gym2,) = db.execute(
            "SELECT dap_Gym2 FROM serial_procedures WHERE end_t IS NULL AND device = 'dap-1'").fetchone()
        db.conn.close()
        assert 0.04 <= total_Gym2 <= 0.046  # 150 Gy·cm²/s for 3 s, as the meter counted it
        shown = format(Decimal(repr(total_Gym2)) * 10000, "f").rstrip("0").rstrip(".")
        expect(dap.locator(".value")).to_have_text(f"{shown} Gy·cm²")  # the stored total, to the last digit
        screenshot(page, "dap-meter-800x480")
        page.click("#new-patient")
        expect(dap.locator(".value")).to_have_text("0 Gy·cm²")
        expect(dap).to_have_class("gauge ok")
    finally:
        sim.terminate()
        sim.wait(10)
