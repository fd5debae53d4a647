"""What goes on the wire: topics, the JSON envelope, MQTT 5 properties.

Every message is one JSON object, the *envelope*::

    {"schema": {"name": "alara-edge/report", "version": 1}, "event_id": "report-…", "seq": 42,
     "store": "<32 hex digits>", "site": "st-marys", "station": "ct-01", "kind": "report",
     "created": "2025-01-31T08:15:02Z", "sent": "2025-01-31T08:15:02.512345Z", "body": {…}}

``body`` is the outbox row's JSON, sent verbatim (numbers exactly as stored).  The JSON Schema
of each kind is in ``docs/schemas/``.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers, writeUTF

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"


def now_iso() -> str:
    """UTC now, ISO 8601 with microseconds and ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def schema_name(kind: str) -> str:
    return f"alara-edge/{kind}"


def topic(prefix: str, site: str, station: str, kind: str) -> str:
    return f"{prefix}/{site}/{station}/{kind}"


def envelope(*, kind: str, event_id: str, seq: int, site: str, station: str, created: str, body_json: str,
             sent: str | None = None, store: str | None = None) -> bytes:
    """The payload bytes; ``body_json`` is spliced in unchanged.

    (Joining the parts with json's string encoder instead takes a quarter of the time, yet the
    drain ran slower with it, in two sessions: see docs/benchmarks.md, "a cheaper envelope".)
    """
    head = {"schema": {"name": schema_name(kind), "version": SCHEMA_VERSION}, "event_id": event_id, "seq": seq}
    if store is not None:
        head["store"] = store
    head.update(site=site, station=station, kind=kind, created=created, sent=sent or now_iso())
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
    return (text[:-1] + ',"body":' + body_json + "}").encode("utf-8")


class PackedProperties:
    """MQTT 5 PUBLISH properties, packed with paho's own encoders and cached per schema.

    paho packs a :class:`Properties` object on every publish, which costs more than the rest of
    the publish; ``_send_publish`` only calls ``pack()``, so this stands in for it.  The bytes equal
    those of the equivalent ``Properties`` object (``tests/uplink/test_payloads.py``).
    """

    __slots__ = ("_packed",)
    _parts: dict[str, tuple[bytes, bytes]] = {}

    def __init__(self, event_id: str, schema: str, seq: int):
        head, middle = self._parts.get(schema) or self._prepare(schema)
        body = b"".join((head, writeUTF(event_id), middle, writeUTF(str(seq))))
        self._packed = VariableByteIntegers.encode(len(body)) + body

    @classmethod
    def _prepare(cls, schema: str) -> tuple[bytes, bytes]:
        """The constant parts around the event_id and seq values, from a paho-packed template."""
        props = Properties(PacketTypes.PUBLISH)
        props.PayloadFormatIndicator = 1
        props.ContentType = CONTENT_TYPE
        packed = props.pack()
        _, header_len = VariableByteIntegers.decode(packed)
        user = VariableByteIntegers.encode(props.getIdentFromName("UserProperty"))
        parts = (packed[header_len:] + user + writeUTF("event_id"),
                 user + writeUTF("schema") + writeUTF(schema) + user + writeUTF("seq"))
        cls._parts[schema] = parts
        return parts

    def pack(self) -> bytes:
        return self._packed


def publish_properties(event_id: str, schema: str, seq: int) -> Properties:
    """The same properties as a paho object (for the will and for tests)."""
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.ContentType = CONTENT_TYPE
    props.UserProperty = [("event_id", event_id), ("schema", schema), ("seq", str(seq))]
    return props


def user_schema(kind: str) -> str:
    """The ``schema`` user property: ``alara-edge/report/1``."""
    return f"{schema_name(kind)}/{SCHEMA_VERSION}"
