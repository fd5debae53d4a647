"""Reconnect pacing: exponential, capped, with jitter, reset after a good connection; the sender's client."""
from __future__ import annotations

import random
import time

import pytest

from agent.config import MqttConfig
from agent.uplink import connection
from agent.uplink.connection import Backoff, SenderClient, new_client, reason_value
from tests.conftest import wait_for
from tests.uplink.broker import Mosquitto


def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(1.0, 8.0, random.Random(7))
    waits = [backoff.next() for _ in range(6)]
    for wait, ceiling in zip(waits, [1, 2, 4, 8, 8, 8]):
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits[3:]}) == 3  # jittered: a fleet does not retry in step
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_two_agents_draw_different_delays():
    a, b = Backoff(1.0, 60.0, random.Random(1)), Backoff(1.0, 60.0, random.Random(2))
    assert [a.next() for _ in range(5)] != [b.next() for _ in range(5)]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_senders_client_reports_every_puback_as_paho_does(tmp_path, protocol):
    """The uplink's client handles a bare PUBACK itself: delivered, not delivered to anyone (0x10), refused
    (0x87) must come out as from paho's own decoding, with the right message id, over a real broker."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n")
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}").start()
    try:
        cfg = MqttConfig(port=broker.port, protocol=protocol)
        watcher = new_client(cfg, "watcher")
        watcher.connect("127.0.0.1", broker.port)
        watcher.subscribe("ok/watched", qos=1)
        watcher.loop_start()
        time.sleep(0.3)
        outcomes = {}
        for sender in (False, True):
            client = new_client(cfg, f"sender-{sender}", sender=sender)
            assert isinstance(client, SenderClient) == sender
            acks: dict[int, tuple[int, object]] = {}
            client.on_publish = lambda _c, _u, mid, rc, _p: acks.__setitem__(mid, (reason_value(rc), rc))
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            mids = {topic: client.publish(topic, b"{}", qos=1).mid for topic in ("ok/watched", "ok/nobody", "refused")}
            wait_for(lambda: len(acks) == 3, timeout=10, what="three PUBACKs")
            client.disconnect()
            client.loop_stop()
            outcomes[sender] = {topic: acks[mid][0] for topic, mid in mids.items()}
            if sender:  # the installed paho has what the shortcut reads: a bare PUBACK takes it
                assert acks[mids["ok/watched"]][1] is connection._SUCCESS
        watcher.loop_stop()
        expected = {"ok/watched": 0x00, "ok/nobody": 0x10, "refused": 0x87} if protocol == "5" else \
            {"ok/watched": 0, "ok/nobody": 0, "refused": 0}
        assert outcomes[True] == outcomes[False] == expected
    finally:
        broker.stop()
