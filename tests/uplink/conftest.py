"""Fixtures for the uplink tests: a throwaway broker, an agent config, a store, a central receiver."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Config
from agent.store import Store
from tests.conftest import wait_for  # also imported from here by the uplink and central tests
from tests.uplink.broker import Mosquitto


@pytest.fixture
def broker(tmp_path: Path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def make_config(tmp_path: Path, port: int, **mqtt) -> Config:
    """An agent config for a broker on ``port``; fast timings so that tests do not wait."""
    base = {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
            "keepalive_s": 2, "rate_per_s": 0, "ack_timeout_s": 5}
    return Config.model_validate({
        "station": {"site": "st-test", "id": "ct-01"},
        "store": {"path": str(tmp_path / "agent" / "store.sqlite"), "spool_dir": str(tmp_path / "agent" / "spool")},
        "privacy": {"secret_file": str(tmp_path / "agent" / "site-secret")},
        "mqtt": base | mqtt,
        "central": {"database": str(tmp_path / "central.sqlite"), "client_id": "central-test"},
    })


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "agent" / "store.sqlite")
    yield s
    s.close()


def enqueue(store, n: int, kind: str = "reading", tag: str = "t", start: int = 0, bus=None) -> list[str]:
    """Commit ``n`` outbox rows one transaction each (as producers do); returns their event ids."""
    from agent.store import outbox

    ids = []
    for i in range(start, start + n):
        eid = outbox.event_id(kind, tag, i)
        with store.transaction() as tx:
            outbox.enqueue(tx, kind, eid, {"n": i, "dose_mGy": round(0.1 * i + 0.001, 3)})
        ids.append(eid)
        if bus is not None:
            bus.publish("outbox", None)
    return ids


def central_view(cfg: Config, station: str | None = None) -> dict:
    """What ``central-report --json`` shows for the test station, or ``station`` (empty dict if nothing yet)."""
    from agent.central.store import CentralStore

    s = CentralStore.open(cfg.central.database)
    try:
        return next((x for x in s.stations() if x["station"] == (station or cfg.station.id)), {})
    finally:
        s.close()


def central_event_ids(cfg: Config) -> list[str]:
    from agent.central.store import CentralStore

    s = CentralStore.open(cfg.central.database)
    try:
        return [r[0] for r in s.conn.execute("SELECT event_id FROM central_events ORDER BY seq").fetchall()]
    finally:
        s.close()


@pytest.fixture
def running():
    """Start components (Uplink, Receiver) and stop them at the end, in reverse order."""
    started = []

    def start(component):
        component.start()
        started.append(component)
        return component

    yield start
    for component in reversed(started):
        component.stop()


@pytest.fixture
def central(running):
    """Factory: ``central(cfg)`` → a started receiver whose subscription is in place (stopped at the end)."""

    def start(cfg: Config):
        from agent.central.receiver import Receiver

        rx = running(Receiver(cfg))
        wait_for(rx.connected.is_set, what="the central receiver")
        return rx

    return start
