"""The station's retained status message and the alarms it carries.

Published directly (not queued in the outbox: only the latest matters) on
``{prefix}/{site}/{station}/status`` with retain set, when the uplink connects, every
``status_interval_s``, when an alarm changes and when it stops; the same message with state
*offline* is the MQTT will, which the broker publishes if the station vanishes.  Its ``seq`` is
the outbox high-water mark, so the central site can tell how far the station has got.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Optional

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .payloads import CONTENT_TYPE, envelope, now_iso, user_schema

log = structlog.get_logger("agent.uplink")


def status_message(*, state: str, site: str, station: str, seq: int, reason: Optional[str] = None,
                   health: Optional[dict[str, Any]] = None, store: Optional[str] = None) -> tuple[str, bytes]:
    """``(event_id, payload)`` of a status envelope; ``health`` adds backlog, dead letters and alarms."""
    event_id = f"status-{uuid.uuid4().hex}"
    body: dict[str, Any] = {"state": state}
    if reason:
        body["reason"] = reason
    if health:
        body.update({k: health[k] for k in ("connected_since", "pending", "inflight", "dead", "last_delivered_at",
                                            "oldest_pending_created", "alarms")})
    created = now_iso()
    return event_id, envelope(kind="status", event_id=event_id, seq=seq, site=site, station=station,
                              created=created, body_json=json.dumps(body, separators=(",", ":")), sent=created,
                              store=store)


def will_properties(event_id: str, seq: int) -> Properties:
    """The will's MQTT 5 properties, the user properties every message has (its ``seq`` is the
    outbox's high-water mark when the agent connected: the will is fixed at CONNECT)."""
    props = Properties(PacketTypes.WILLMESSAGE)
    props.PayloadFormatIndicator = 1
    props.ContentType = CONTENT_TYPE
    props.UserProperty = [("event_id", event_id), ("schema", user_schema("status")), ("seq", str(seq))]
    return props


class Alarms:
    """Conditions a person must see (quota reached, dead letters, no subscriber), with since/count.

    ``changed`` is set whenever one is raised (again) or cleared, so that the status goes out soon.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, dict[str, Any]] = {}
        self._raised_at: dict[str, float] = {}
        self.changed = threading.Event()

    def raise_(self, kind: str, detail: Optional[dict[str, Any]] = None) -> None:
        with self._lock:
            self._raised_at[kind] = time.monotonic()
            alarm = self._active.get(kind)
            if alarm is None:
                self._active[kind] = {"since": now_iso(), "count": 1, **(detail or {})}
            else:
                alarm.update(detail or {}, count=alarm["count"] + 1)
            self.changed.set()  # a new count too (the uplink sends at most one status a second for it)

    def clear(self, kind: str, quiet_s: float = 0.0) -> None:
        """End the alarm, unless it was raised again within the last ``quiet_s`` seconds."""
        with self._lock:
            if time.monotonic() - self._raised_at.get(kind, 0.0) < quiet_s:
                return
            if self._active.pop(kind, None) is None:
                return
        log.info("alarm_cleared", alarm=kind)
        self.changed.set()

    def active(self, kind: str) -> bool:
        return kind in self._active

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a, kind=k) for k, a in sorted(self._active.items())]
