"""Central-receiver fixtures: a throwaway broker and a raw publisher that plays a station."""
from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.store import outbox
from agent.uplink.payloads import envelope
from tests.uplink.broker import Mosquitto
from tests.uplink.conftest import central, running, store  # noqa: F401  (fixtures)


@pytest.fixture
def broker(tmp_path: Path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


STORE = "5e" * 16  # the id of the store a test station numbers its seq in


def message(seq: int, kind: str = "alert", station: str = "ct-01", site: str = "st-test", tag: str = "x",
            store: str | None = STORE) -> bytes:
    """A station's message; ``store`` None: as an agent from before the envelope named its store."""
    return envelope(kind=kind, event_id=outbox.event_id(kind, station, tag, seq), seq=seq, site=site,
                    station=station, created="2025-03-01T10:20:00Z", body_json=json.dumps({"n": seq}), store=store)


class Station:
    """Publishes raw payloads (QoS 1) as a station would, waiting for each PUBACK."""

    def __init__(self, port: int):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, payload: bytes, topic: str | None = None) -> None:
        """Publish on ``topic``, by default the one the payload names (``alara/{site}/{station}/{kind}``)."""
        if topic is None:
            try:
                doc = json.loads(payload)
                topic = f"alara/{doc['site']}/{doc['station']}/{doc['kind']}"
            except (ValueError, KeyError):
                topic = "alara/st-test/ct-01/alert"
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def station(broker):
    s = Station(broker.port)
    yield s
    s.close()
