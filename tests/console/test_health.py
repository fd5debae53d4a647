"""``/healthz`` and the health the page shows."""
import time


def test_healthz_is_200_when_healthy_and_503_when_the_store_cannot_write(station):
    s = station()
    status, _, health = s.request("/healthz")
    assert status == 200 and health["ok"] is True and health["parts"]["store"]["ok"] is True
    assert health["parts"]["backlog"] == {"ok": True, "pending": 0, "inflight": 0, "dead": 0}
    s.store.db.conn.close()  # as if the disk had gone away under the writer
    status, _, health = s.request("/healthz")
    assert status == 503 and health["ok"] is False and health["status"] == "failing"
    assert health["parts"]["store"]["ok"] is False


def test_backlog_counts_what_waits_for_the_central_site(station):
    from tests.console.test_alerts import raise_alert

    s = station()
    raise_alert(s)
    raise_alert(s)
    health = s.request("/healthz")[2]
    assert health["parts"]["backlog"]["pending"] == 2


def test_the_central_broker_shows_connected_then_offline_and_the_agent_stays_healthy(station, tmp_path):
    """A real Mosquitto as the central broker: losing it degrades the agent, it does not fail it."""
    from tests.uplink.broker import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    try:
        s = station(mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                          "keepalive_s": 2})
        health = _wait_for(s, lambda h: h["parts"]["broker"]["ok"] is True)
        assert health["status"] == "ok"
        broker.stop()
        health = _wait_for(s, lambda h: h["parts"]["broker"]["ok"] is False)
        assert health["ok"] is True and health["status"] == "degraded"
        assert s.request("/healthz")[0] == 200
    finally:
        broker.stop()


def _wait_for(station, condition, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = station.request("/healthz")[2]
        if condition(health) or time.monotonic() > deadline:
            assert condition(health), health
            return health
        time.sleep(0.1)
