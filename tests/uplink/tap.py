"""A plain paho subscriber that records what the broker delivers, with MQTT 5 properties."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool
    content_type: Any
    payload_format: Any
    user: dict[str, str]
    expiry: Any

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.payload)


class Tap:
    def __init__(self, port: int, topic: str = "alara/#", protocol: int = mqtt.MQTTv5):
        self.messages: list[Seen] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=protocol)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("tap did not subscribe")

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        p = m.properties
        seen = Seen(m.topic, m.payload, bool(m.retain), getattr(p, "ContentType", None),
                    getattr(p, "PayloadFormatIndicator", None), dict(getattr(p, "UserProperty", []) or []),
                    getattr(p, "MessageExpiryInterval", None))
        with self._lock:
            self.messages.append(seen)

    def of_kind(self, kind: str) -> list[Seen]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith("/" + kind)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
