"""The page in a real headless Chromium, at the 800x480 kiosk size and on a desktop."""
import time
from urllib.parse import urlsplit

from playwright.sync_api import expect

from simulator import rdsr
from tests.console.conftest import screenshot
from tests.console.test_alerts import raise_alert


def open_console(page, station):
    page.goto(station.url + "/")
    page.wait_for_selector("#live.on", timeout=20_000)


def test_alert_banner_appears_without_reload_and_ack_clears_it_everywhere(station, browser, page):
    s = station()
    open_console(page, s)
    desktop = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    open_console(desktop, s)
    assert page.is_hidden("#banner")

    t0 = time.perf_counter()
    alert = raise_alert(s)
    page.wait_for_selector(f'#banner [data-alert-id="{alert.id}"]', state="visible", timeout=20_000)
    delay = time.perf_counter() - t0
    print(f"alert committed → banner visible: {delay * 1000:.0f} ms")
    assert delay <= 3.0
    assert "120 mGy" in page.inner_text("#banner") and "CRITICAL" in page.inner_text("#banner").upper()
    desktop.wait_for_selector(f'#banner [data-alert-id="{alert.id}"]', state="visible", timeout=20_000)
    screenshot(page, "alert-800x480")

    page.click("#banner button.ack")
    page.fill("#ack-by", "RT42")
    page.click("#ack-submit")  # no reason: a critical alert needs one
    assert page.is_visible("#ack-dialog") and not s.outbox("ack")
    page.check("#ack-reasons input[value='clinically justified']")
    page.click("#ack-submit")
    page.wait_for_selector("#banner", state="hidden", timeout=20_000)
    desktop.wait_for_selector("#banner", state="hidden", timeout=20_000)  # the other console hears the ack
    (sent,) = s.outbox("ack")
    assert (sent["alert_id"], sent["by"], sent["reason"]) == (alert.id, "RT42", "clinically justified")
    assert not page.errors
    desktop.context.close()


def test_gauge_moves_with_live_dap_readings(station, page):
    """Readings as the serial source publishes them; marks are the NCRP 168 levels of the rules in force."""
    s = station()
    open_console(page, s)
    gauge = page.locator(".gauge[data-quantity=dap_Gym2]")
    for value, shown, level in (("0.0125", "125", "ok"), ("0.03", "300", "warning"), ("0.0512", "512", "critical")):
        s.bus.publish("reading", {"station": "ct-1", "device": "dap-1", "role": "dap_meter", "procedure_id": "proc-1",
                                  "started_at": "2026-11-02T10:00:00.000Z", "dap_Gym2": float(value),
                                  "air_kerma_Gy": 0.2})
        expect(gauge.locator(".value")).to_have_text(f"{shown} Gy·cm²", timeout=20_000)
        expect(gauge).to_have_class(f"gauge {level}")
    expect(gauge.locator(".marks")).to_have_text("1st notification 300 · SRDL 500")
    expect(page.locator(".gauge[data-quantity=air_kerma_Gy] .value")).to_have_text("200 mGy")
    screenshot(page, "gauge-800x480")


def test_usable_at_800x480_and_loads_nothing_external(station, page):
    s = station()
    for _ in range(4):
        raise_alert(s)
    for n in range(10):  # a busy hour: more studies than the panel holds
        s.agent.pipeline.ingest(rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head")], accession=f"ACC{n:04d}")), "test")
    open_console(page, s)
    page.wait_for_selector("#banner .item")
    # one screen: nothing is cut off sideways or below, the panels scroll inside themselves;
    # the first alert's button and the new-patient button are on screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    assert page.evaluate("document.documentElement.scrollHeight") <= 480
    for selector in ("#banner .item button.ack", "#new-patient", "#sound"):
        box = page.locator(selector).first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 800 and box["y"] + box["height"] <= 480, selector
        assert box["height"] >= 40, f"{selector} too small to touch"
    page.locator("#banner .item button.ack").first.click()
    submit = page.locator("#ack-submit").bounding_box()
    assert submit and submit["y"] + submit["height"] <= 480
    screenshot(page, "ack-dialog-800x480")
    hosts = {urlsplit(u).netloc for u in page.requests if not u.startswith("data:")}
    assert hosts == {f"127.0.0.1:{s.console.port}"}
    assert not page.errors


def test_a_long_exam_name_wraps_and_the_doses_stay_in_view_at_800x480(station, page):
    s = station()
    name = "CT_THORAX_ABDOMEN_PELVIS_WITH_CONTRAST_ROUTINE_PROTOCOL_V2_LOW_DOSE_FOLLOW_UP_ONCOLOGY"
    report = rdsr.ct_report([rdsr.CTSeries("Chest", ctdivol="12.25", dlp="431.5")], description=name)
    assert s.agent.pipeline.ingest(rdsr.encode(report), "test").status == "stored"
    open_console(page, s)
    expect(page.locator("#studies tbody tr").first).to_contain_text(name)
    panel = page.locator("section.studies")
    assert panel.evaluate("p => p.scrollWidth <= p.clientWidth"), "the studies panel scrolls sideways"
    expect(page.locator("#studies .dose").first).to_contain_text("12.25 mGy")
    box = panel.bounding_box()
    for dose in page.locator("#studies .dose").all():  # CTDIvol and DLP, on screen without scrolling
        right = dose.bounding_box()
        assert right["x"] + right["width"] <= box["x"] + box["width"], f"{dose.inner_text()} is cut off"
    screenshot(page, "long-exam-800x480")


def test_every_open_alert_can_be_reached_and_acknowledged_at_800x480(station, page):
    """Only two alerts fit the kiosk's banner; the rest were behind a "+ N more" that was plain text, so a
    critical alert further down could be neither seen nor acknowledged."""
    s = station()
    alerts = [raise_alert(s, severity="warning") for _ in range(4)] + [raise_alert(s), raise_alert(s)]
    open_console(page, s)
    expect(page.locator("#banner .item")).to_have_count(2)
    more = page.locator("#banner button.more")
    expect(more).to_have_text("+ 4 more open alerts: show all")
    assert more.bounding_box()["height"] >= 40
    more.click()
    expect(page.locator("#banner .item")).to_have_count(6)
    last = page.locator(f'#banner [data-alert-id="{alerts[0].id}"] button.ack')  # the oldest warning: last in the list
    last.scroll_into_view_if_needed()
    box = last.bounding_box()
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= 480
    last.click()
    page.fill("#ack-by", "RT7")
    page.click("#ack-submit")
    expect(page.locator(f'#banner [data-alert-id="{alerts[0].id}"]')).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    screenshot(page, "all-alerts-800x480")
    page.locator("#banner button.more").click()  # "Show fewer"
    expect(page.locator("#banner .item")).to_have_count(2)


def test_page_reconnects_by_itself_after_the_agent_restarts(station, page):
    s = station()
    open_console(page, s)
    port = s.console.port
    s.console.stop()
    page.wait_for_selector("#live.off", timeout=5000)
    alert = raise_alert(s, publish=False)  # raised while the page was disconnected
    s.replace_console()
    page.wait_for_selector(f'#banner [data-alert-id="{alert.id}"]', state="visible", timeout=20_000)
    assert page.is_visible("#live.on")


def test_times_are_the_stations_and_another_days_alert_shows_its_date(station, browser):
    """A kiosk whose browser was left on UTC showed the alerts' and studies' times, and its clock, an hour
    off a station in Zurich; an alert from another day looked like today's."""
    import re
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    s = station(timezone="Europe/Zurich")
    raise_alert(s)  # raised 2026-11-02 09:30 UTC: 10:30 in Zurich
    context = browser.new_context(viewport={"width": 800, "height": 480}, timezone_id="UTC", locale="en-GB")
    page = context.new_page()
    try:
        open_console(page, s)
        expect(page.locator("#banner .detail").first).to_contain_text("2 Nov 10:30")
        now = datetime.now(ZoneInfo("Europe/Zurich"))  # this minute or, if it ends during the check, the next
        minutes = "|".join(t.strftime("%H:%M") for t in (now, now + timedelta(minutes=1)))
        expect(page.locator("#clock")).to_have_text(re.compile(f"^({minutes})$"))
    finally:
        context.close()


def test_a_hung_agent_is_noticed_and_what_it_showed_no_longer_looks_live(tmp_path, page):
    """SIGSTOP keeps the connection open and silent: the page said "live" for ever, with a pulsing banner."""
    import os
    import signal

    from simulator import rdsr
    from tests.conftest import AgentProcess
    from agent.sources.dicom.scu import send

    agent = AgentProcess(tmp_path / "a").start()
    try:
        assert send([rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="95.25")])], "127.0.0.1", agent.dicom_port) == [0]
        page.goto(f"http://127.0.0.1:{agent.console_port}/")
        page.wait_for_selector("#banner .item", timeout=20_000)
        expect(page.locator("#live")).to_have_text("live")
        os.kill(agent.proc.pid, signal.SIGSTOP)
        try:
            expect(page.locator("#live")).to_contain_text("offline since", timeout=25_000)
            assert page.evaluate("document.body.classList.contains('stale')")
            assert page.locator("#banner").evaluate("b => getComputedStyle(b).animationName") == "none"
        finally:
            os.kill(agent.proc.pid, signal.SIGCONT)
        expect(page.locator("#live")).to_have_text("live", timeout=25_000)
        assert not page.evaluate("document.body.classList.contains('stale')")
    finally:
        agent.stop()


def test_an_alarm_shows_in_the_health_bar(station, page):
    s = station()
    open_console(page, s)
    s.bus.publish("alarm", {"kind": "store_quota_reached"})
    expect(page.locator('#health [data-part="alarm"]')).to_contain_text("store quota reached", timeout=20_000)
    page.reload()
    page.wait_for_selector("#live.on")
    expect(page.locator('#health [data-part="alarm"]')).to_contain_text("store quota reached", timeout=20_000)
    s.bus.publish("alarm", {"kind": "store_quota_reached", "cleared": True})  # the condition is over
    expect(page.locator('#health [data-part="alarm"]')).to_have_count(0, timeout=20_000)
    page.reload()
    page.wait_for_selector("#live.on")
    expect(page.locator('#health [data-part="alarm"]')).to_have_count(0)


def test_what_happens_while_the_page_loads_its_state_is_not_lost(station, page):
    """The page opens its event stream, then fetches a snapshot: an alert or alarm that comes in
    after the snapshot was taken but before it arrived must still show."""
    s = station()
    raised = {}

    def late_snapshot(route):
        response = route.fetch()  # the snapshot, taken now
        raised["alert"] = raise_alert(s)  # then something happens...
        s.bus.publish("alarm", {"kind": "store_quota_reached"})
        time.sleep(1.0)  # ...and reaches the page by its stream before the snapshot does
        route.fulfill(response=response)

    page.route("**/api/state", late_snapshot)
    page.goto(s.url + "/")
    deadline = time.monotonic() + 20
    while "alert" not in raised and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # lets Playwright run the route handler
    assert "alert" in raised, "the page never asked for its state"
    expect(page.locator(f'#banner [data-alert-id="{raised["alert"].id}"]')).to_be_visible(timeout=20_000)
    expect(page.locator('#health [data-part="alarm"]')).to_contain_text("store quota reached", timeout=20_000)


def test_pin_login_in_the_browser_then_live_alerts_and_ack(station, page):
    s = station(bind="0.0.0.0", token="4711")
    page.goto(s.url + "/")
    page.fill("#token", "1234")
    page.click("button[type=submit]")
    expect(page.locator(".login-error")).to_have_text("Wrong token or PIN.")
    page.fill("#token", "4711")
    page.click("button[type=submit]")
    page.wait_for_selector("#live.on", timeout=20_000)
    alert = raise_alert(s, severity="warning")
    page.wait_for_selector(f'#banner [data-alert-id="{alert.id}"]', state="visible", timeout=20_000)
    page.click("#banner button.ack")
    page.fill("#ack-by", "RT9")
    page.click("#ack-submit")  # a warning needs no reason
    page.wait_for_selector("#banner", state="hidden", timeout=20_000)
    assert [a["by"] for a in s.outbox("ack")] == ["RT9"]


def test_a_kiosk_locked_out_after_wrong_pins_keeps_its_login_form(station, page, monkeypatch):
    """After five wrong PINs the kiosk showed a bare "Too many wrong attempts" text with no form: on a
    touchscreen in kiosk mode (no address bar, no reload button) nobody could try again, ever."""
    from agent.console import access

    monkeypatch.setattr(access, "LOCKOUT_S", 1.5)
    s = station(bind="0.0.0.0", token="4711")
    page.goto(s.url + "/")
    for _ in range(access.MAX_FAILURES):
        page.fill("#token", "0000")
        page.click("button[type=submit]")
    page.fill("#token", "4711")  # even the right PIN, during the lock-out
    page.click("button[type=submit]")
    expect(page.locator(".login-error")).to_contain_text("Too many wrong attempts")
    expect(page.locator("#token")).to_be_visible()  # the form is still there to try again
    page.wait_for_timeout(1600)
    page.fill("#token", "4711")
    page.click("button[type=submit]")
    page.wait_for_selector("#live.on", timeout=20_000)


def test_a_kiosk_whose_token_was_changed_shows_the_login_instead_of_waiting_for_ever(station, page):
    """The agent restarts with a new token: the open page cannot reconnect with its old cookie; it must
    ask for the new token (and then show alerts) rather than say "reconnecting…" for ever."""
    from pydantic import SecretStr

    s = station(bind="0.0.0.0", token="4711")
    page.goto(s.url + "/?token=4711")
    page.wait_for_selector("#live.on", timeout=20_000)
    s.console.stop()
    s.cfg.console.token = SecretStr("9999")
    s.replace_console()
    page.wait_for_selector("#token", state="visible", timeout=20_000)  # the login form
    page.fill("#token", "9999")
    page.click("button[type=submit]")
    page.wait_for_selector("#live.on", timeout=20_000)
    alert = raise_alert(s, severity="warning")
    page.wait_for_selector(f'#banner [data-alert-id="{alert.id}"]', state="visible", timeout=20_000)


def test_a_tone_for_warnings_and_criticals_not_for_info_and_a_large_backlog_is_amber(station, page):
    """Info (a DRL flag on about a quarter of exams) sounded like a warning; a backlog of 1,000 or more
    was drawn grey like a part that is not configured."""
    from tests.uplink.conftest import enqueue

    s = station()
    page.add_init_script("""
        window.tones = 0;
        const make = AudioContext.prototype.createOscillator;
        AudioContext.prototype.createOscillator = function () { window.tones += 1; return make.call(this); };
    """)
    open_console(page, s)
    if page.locator("#sound").text_content() != "Sound on":  # headless Chromium may allow it without a tap
        page.click("#sound")
    expect(page.locator("#sound")).to_have_text("Sound on")
    raise_alert(s, severity="info")
    page.wait_for_selector("#banner .item")
    page.wait_for_timeout(500)
    assert page.evaluate("window.tones") == 0
    raise_alert(s, severity="warning")
    page.wait_for_function("() => window.tones > 0", timeout=10_000)
    enqueue(s.store, 1200)
    s.bus.publish("outbox", None)
    expect(page.locator('#health li[data-part="backlog"]')).to_have_class("warn", timeout=30_000)


def test_after_an_acknowledgement_the_keyboard_focus_goes_on_and_dose_levels_are_in_words(station, page):
    """The acknowledged alert's button vanished with the focus on it (focus fell to the page); a dose's level
    was its colour alone, which a screen reader (or a colour-blind technologist) does not get."""
    s = station(dicom=True)
    from agent.sources.dicom.scu import send

    report = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="1100", dlp="16500")], accession="HIGH1")
    assert send([report], "127.0.0.1", s.agent.dicom.port) == [0]
    raise_alert(s, severity="warning")
    open_console(page, s)
    page.locator("#banner button.ack").first.focus()
    page.keyboard.press("Enter")
    page.fill("#ack-by", "RT7")
    page.check("#ack-reasons input[value='clinically justified']")
    page.locator("#ack-submit").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.getElementById('ack-dialog').open")
    assert page.evaluate("document.activeElement.matches('#banner button.ack, #new-patient')")
    dose = page.locator("#studies .dose").first
    assert "(critical alert)" in dose.text_content()


def test_the_acknowledge_dialog_of_a_critical_ct_alert_fits_the_800x480_kiosk(station, page):
    """A real AAPM alert value (over DICOM) names its source in a long citation: in the dialog it pushed the
    Acknowledge and Cancel buttons half below the bottom of the 800x480 screen."""
    from agent.sources.dicom.scu import send

    s = station(dicom=True)
    report = rdsr.ct_report([rdsr.CTSeries("Head routine", "Head", ctdivol="1200.0", dlp="1900.0")], accession="KIOSK1",
                            description="CT Head")
    assert send([report], "127.0.0.1", s.agent.dicom.port) == [0]
    open_console(page, s)
    page.locator("#banner .item", has_text="CRITICAL").locator("button.ack").click()
    expect(page.locator("#ack-required")).to_have_text("(required for a critical alert)")
    expect(page.locator("#ack-alert")).to_contain_text("KIOSK1")
    expect(page.locator("#ack-alert")).to_contain_text("1000 mGy")
    for button in ("#ack-submit", "#ack-cancel", "#ack-by"):
        box = page.locator(button).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 480, f"{button} is cut off: {box}"
        # nothing over its bottom edge (the dialog clips what overflows it)
        hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.closest('button, input')?.id",
                            [box["x"] + box["width"] / 2, box["y"] + box["height"] - 3])
        assert hit == button[1:], f"{button} is hidden at its bottom edge (found {hit})"
    screenshot(page, "ack-dialog-critical-800x480")


def test_an_acknowledgement_right_after_an_agent_restart_is_recorded(station, page):
    """Without a token the console's CSRF token is new at every start: an acknowledgement sent after the agent
    came back, before the page had reconnected to its event stream, was refused with "Not recorded: missing or
    wrong CSRF token", which says nothing a technologist can act on."""
    s = station()
    alert = raise_alert(s)
    open_console(page, s)
    page.click(f'#banner [data-alert-id="{alert.id}"] button.ack')
    page.fill("#ack-by", "RT5")
    page.check("#ack-reasons input[value='large patient']")
    page.route("**/api/events", lambda route: route.abort())  # the page has not heard the agent come back yet
    s.console.stop()
    page.wait_for_selector("#live.off", timeout=20_000)
    s.replace_console()
    page.click("#ack-submit")
    expect(page.locator("#ack-dialog")).to_be_hidden()
    assert [(a["alert_id"], a["by"], a["reason"]) for a in s.outbox("ack")] == [(alert.id, "RT5", "large patient")]
    page.unroute("**/api/events")
    page.wait_for_selector("#live.on", timeout=20_000)
    expect(page.locator("#banner")).to_be_hidden()
