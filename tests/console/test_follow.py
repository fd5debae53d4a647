"""The terminal view (`alerts --follow`) and acknowledging through the running agent."""
import io
import threading
import time

import pytest

from agent.console.client import ConsoleClient, ConsoleRefused, ConsoleUnavailable
from agent.console.follow import follow
from tests.console.test_alerts import raise_alert


class Follower:
    """``follow()`` on a thread, writing to a buffer, until stopped."""

    def __init__(self, cfg):
        self.out = io.StringIO()
        self.done = False
        self.thread = threading.Thread(target=follow, args=(cfg, self.out), kwargs={"stop": lambda: self.done})
        self.thread.start()

    def wait_for(self, text, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.out.getvalue():
                return self.out.getvalue()
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not printed; got:\n{self.out.getvalue()}")

    def stop(self, station):
        self.done = True
        station.bus.publish("outbox", None)  # any event wakes the stream so it sees the stop
        self.thread.join(15)


def test_follow_prints_new_alerts_with_a_bell_and_their_acknowledgement(station):
    s = station()
    old = raise_alert(s, severity="warning")
    f = Follower(s.cfg)
    f.wait_for("following the running agent")
    assert old.id in f.out.getvalue() and "\a" not in f.out.getvalue()  # open alerts listed, no bell for them
    alert = raise_alert(s)
    text = f.wait_for(alert.id)
    line = next(l for l in text.splitlines() if alert.id in l)
    assert line.startswith("\a") and "CRITICAL" in line and "CT head" in line and "120 mGy" in line
    ConsoleClient(s.cfg.console).acknowledge(alert.id, "RT42", "repeat for motion")
    f.wait_for(f"ACK       {alert.id} by RT42 (repeat for motion)")
    f.stop(s)
    assert "\033[" not in f.out.getvalue()  # not a terminal: no colour codes


def test_follow_reads_the_store_while_the_agent_is_away(station):
    s = station()
    f = Follower(s.cfg)
    f.wait_for("following the running agent")
    s.console.stop()
    f.wait_for("agent not reachable")
    alert = raise_alert(s, publish=False)
    f.wait_for(alert.id)
    f.done = True
    f.thread.join(15)


def test_ack_through_the_running_agent_with_its_token(station):
    s = station(bind="0.0.0.0", token="4711")
    alert = raise_alert(s)
    client = ConsoleClient(s.cfg.console)
    with pytest.raises(ConsoleRefused, match="reason is required") as refused:
        client.acknowledge(alert.id, "RT42", None)
    assert refused.value.status == 400
    acked = client.acknowledge(alert.id, "RT42", "protocol error", "wrong kernel")
    assert acked["ack"]["by"] == "RT42"
    assert [a["alert_id"] for a in s.outbox("ack")] == [alert.id]
    s.console.stop()
    with pytest.raises(ConsoleUnavailable):
        ConsoleClient(s.cfg.console).acknowledge(alert.id, "RT42", "protocol error")
