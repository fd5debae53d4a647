"""The central receiver: subscribes to every station's topics and stores each message once.

* Persistent session: MQTT 5 clean start off with a long session expiry (3.1.1: clean session
  off), so the broker queues messages while the receiver is away.
* Optional shared subscription (``$share/{group}/…``) so that several receivers share the load.
* Manual acknowledgement: a message is PUBACKed only after the transaction holding it has
  committed, so a receiver crash loses nothing (the broker sends it again; it is then dropped
  as a duplicate by ``event_id``).
* Per-station ``seq`` gaps are logged as they appear and reported by ``central-report``.
* A station's store numbering a second event with a seq already held (``seq_reused``: a store
  restored from an older backup, boxes cloned from one image) is logged the first time, then at most
  once a minute per station and store with a count.
"""
from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Optional

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.config import Config
from agent.logs import Repeats
from agent.uplink.connection import (Backoff, CredentialsError, closed_before_connack, connect, is_v5, new_client,
                                     reason_text, reason_value)

from .store import DUPLICATE, KINDS, STORED, CentralStore, CentralStoreError, Message, safe_database

log = structlog.get_logger("agent.central")

BATCH_MAX = 200
STORE_ID = re.compile(r"[0-9a-f]{32}")  # docs/schemas/envelope.json
SEQ_MAX = 2**63 - 1  # BIGINT in both databases
VERSION_MAX = 2**31 - 1  # INTEGER in PostgreSQL
REUSE_HINT = ("this store numbered two different events with one seq: it was probably restored from an older "
              "backup, or two boxes run copies of one store (cloned from one image). Check that station's "
              "backup and restore; give a cloned box a store of its own. central-report counts these in seq_reused")
ENVELOPE_FIELDS = {"schema": dict, "event_id": str, "seq": int, "site": str, "station": str, "kind": str,
                   "created": str, "sent": str, "body": dict}


class Invalid(Exception):
    """A message that is not an alara-edge envelope (kept in ``central_rejects``)."""


def topic_filter(prefix: str, shared_group: Optional[str]) -> str:
    base = f"{prefix}/+/+/+"
    return f"$share/{shared_group}/{base}" if shared_group else base


def parse(prefix: str, topic: str, payload: bytes) -> Message:
    """Validate an incoming message against its topic; raises :class:`Invalid` with the reason."""
    levels = topic.split("/")
    prefix_levels = prefix.split("/")
    if len(levels) != len(prefix_levels) + 3 or levels[:len(prefix_levels)] != prefix_levels:
        raise Invalid("topic is not {prefix}/{site}/{station}/{kind}")
    site, station, kind = levels[-3:]
    if kind not in KINDS:
        raise Invalid(f"unknown kind {kind!r}")
    try:
        text = payload.decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise Invalid("payload is not a JSON object")
    for name, typ in ENVELOPE_FIELDS.items():
        if not isinstance(doc.get(name), typ) or (typ is int and isinstance(doc.get(name), bool)):
            raise Invalid(f"missing or mistyped field {name!r}")
        if typ is str and not _unicode(doc[name]):
            raise Invalid(f"field {name!r} is not valid Unicode (a lone surrogate)")
    if (doc["site"], doc["station"], doc["kind"]) != (site, station, kind):
        raise Invalid("site, station or kind differ from the topic")
    low = 0 if kind == "status" else 1  # docs/schemas: an event's seq starts at 1, a status's may be 0
    if not low <= doc["seq"] <= SEQ_MAX:
        raise Invalid(f"seq {doc['seq']} is outside {low}..{SEQ_MAX}")
    schema = doc["schema"]
    version = schema.get("version")
    if not isinstance(schema.get("name"), str) or not isinstance(version, int) or isinstance(version, bool):
        raise Invalid("schema needs a name and a version")
    if not _unicode(schema["name"]) or not 1 <= version <= VERSION_MAX:
        raise Invalid(f"schema name is not valid Unicode, or version {version} is outside 1..{VERSION_MAX}")
    store = doc.get("store")
    if store is not None and not (isinstance(store, str) and STORE_ID.fullmatch(store)):
        raise Invalid("store is not an id (32 hexadecimal digits)")
    return Message(site=site, station=station, kind=kind, event_id=doc["event_id"], seq=doc["seq"], store=store,
                   schema_name=schema["name"], schema_version=schema["version"], created=doc["created"],
                   sent=doc["sent"], envelope=text)


def _unicode(text: str) -> bool:
    """JSON can escape a lone surrogate, which no database (nor UTF-8) can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Receiver:
    """``run(stop)`` in the foreground, or ``start()``/``stop()`` on a thread.

    ``connected`` is set once the subscription is acknowledged (SUBACK), i.e. when messages
    published from then on are certain to reach this receiver's session.
    """

    def __init__(self, config: Config, store: Optional[CentralStore] = None):
        self.cfg = config
        self.mqtt = config.mqtt
        self.central = config.central
        self.store = store or CentralStore.open(config.central.database)
        self.filter = topic_filter(self.mqtt.topic_prefix, self.central.shared_group)
        self.connected = threading.Event()
        self.counts = {"stored": 0, "duplicates": 0, "rejected": 0}
        self._batch: list[mqtt.MQTTMessage] = []
        self._max_seq: dict[tuple[str, str, str], int] = {}  # per site, station and store
        self._reuses = Repeats()  # per site, station and store: the first seq_reused logged, then one a minute
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lost: Optional[str] = None
        self._session_present = False
        self._connacked = False  # the broker answered CONNECT on the current connection
        self._store_broken = False

    # -- thread helpers (tests, embedding) ----------------------------------------------------
    def start(self) -> "Receiver":
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="central", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s)
        log.info("central_started", broker=f"{self.mqtt.host}:{self.mqtt.port}", subscription=self.filter,
                 client_id=self.central.client_id, database=safe_database(self.central.database))
        while not stop.is_set():
            if self._store_broken and not self._reopen_store():
                stop.wait(backoff.next())
                continue
            client = self._connect()
            if client is None:
                stop.wait(backoff.next())
                continue
            deadline = time.monotonic() + max(10.0, self.mqtt.keepalive_s)
            while not stop.is_set() and self._lost is None:
                rc = client.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS and self._lost is None:
                    self._lost = mqtt.error_string(rc)
                if self.connected.is_set():
                    backoff.reset()
                elif time.monotonic() > deadline:
                    self._lost = "no CONNACK"
                self._flush(client)
            self._flush(client)
            self.connected.clear()
            client.disconnect()
            if not stop.is_set():
                delay = backoff.next()
                log.warning("central_disconnected", reason=self._reason(), retry_in_s=round(delay, 2))
                stop.wait(delay)
        self.store.close()
        log.info("central_stopped", **self.counts)

    def _reopen_store(self) -> bool:
        try:
            self.store.reopen()
        except CentralStoreError as exc:
            log.error("central_store_unavailable", error=str(exc))
            return False
        self._store_broken = False
        log.info("central_store_reopened")
        return True

    def _reason(self) -> Optional[str]:
        """Why the connection ended; a broker that closed it before its CONNACK (an expired client certificate,
        one from another CA) says nothing, so say what to check, as the agent does."""
        lost = self._lost
        if lost and not self._connacked and (lost.startswith("disconnected:")
                                             or lost == mqtt.error_string(mqtt.MQTT_ERR_CONN_LOST)):
            return closed_before_connack(self.mqtt, lost)
        return lost

    def _connect(self) -> Optional[mqtt.Client]:
        self._lost = None
        self._connacked = False
        self._batch.clear()
        try:
            client = new_client(self.mqtt, self.central.client_id, persistent_session=True, manual_ack=True)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            connect(client, self.mqtt, session_expiry_s=self.central.session_expiry_s if is_v5(self.mqtt) else None)
            return client
        except (CredentialsError, OSError, ValueError) as exc:
            log.warning("central_connect_failed", error=str(exc))
            return None

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if reason_value(reason_code) >= 0x80:
            self._lost = f"CONNACK {reason_text(reason_code)}"
            return
        self._connacked = True
        if is_v5(self.mqtt):  # a resumed session keeps its subscription: no second copy of retained status
            client.subscribe(self.filter, options=SubscribeOptions(
                qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB))
        else:
            client.subscribe(self.filter, qos=1)
        self._session_present = bool(getattr(flags, "session_present", False))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reason_codes: list[Any], _p: Any) -> None:
        refused = [reason_text(rc) for rc in reason_codes if reason_value(rc) >= 0x80]
        if refused:
            self._lost = f"subscription refused: {', '.join(refused)}"
            log.error("central_subscription_refused", subscription=self.filter, reason=refused)
            return
        self.connected.set()
        log.info("central_connected", subscription=self.filter, session_present=self._session_present)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        if self._lost is None:
            self._lost = f"disconnected: {reason_text(reason_code)}"

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._batch.append(message)
        if len(self._batch) >= BATCH_MAX:
            self._flush(_c)

    def _flush(self, client: mqtt.Client) -> None:
        """Commit the batch, then acknowledge it; on a store error nothing is acknowledged."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        accepted: list[Message] = []
        raws: list[mqtt.MQTTMessage] = []
        for message in batch:
            try:
                accepted.append(parse(self.mqtt.topic_prefix, message.topic, message.payload))
                raws.append(message)
            except Invalid as exc:
                self._reject(message, str(exc))
        try:
            outcomes = self.store.record(accepted)
        except CentralStoreError as exc:
            stored = self._one_by_one(raws, accepted) if exc.data else None
            if stored is None:
                log.error("central_store_failed", error=str(exc), messages=len(batch))
                self._lost = "store error"  # reconnect later: the broker sends the unacknowledged messages again
                self._store_broken = True
                return
            accepted, outcomes = stored
        numbered: list[Message] = []  # seqs new to the database: a reuse shows there
        handled = {"stored": 0, "duplicates": 0}
        for m, outcome in zip(accepted, outcomes):
            if m.kind == "status":
                continue
            handled["stored" if outcome == STORED else "duplicates"] += 1
            if outcome != DUPLICATE:
                numbered.append(m)
            if not self.central.shared_group:  # a shared subscription sees only its share of the seqs
                self._track_seq(m)  # a duplicate too: another store may have numbered it (a reinstalled station)
        for message in batch:
            if message.qos > 0:
                client.ack(message.mid, message.qos)
        self._log_reuses(numbered)
        for key, n in handled.items():  # counted once all is done with them, logs included
            self.counts[key] += n

    def _one_by_one(self, raws: list[mqtt.MQTTMessage], accepted: list[Message]
                    ) -> Optional[tuple[list[Message], list[str]]]:
        """The database refused a value in the batch: store its messages one at a time, and keep the
        one(s) it refuses aside (acknowledged, like unreadable input) so that they cannot block the
        others forever. None if the database itself fails meanwhile."""
        kept: list[Message] = []
        outcomes: list[str] = []
        for raw, m in zip(raws, accepted):
            try:
                outcomes += self.store.record([m])
                kept.append(m)
            except CentralStoreError as exc:
                if not exc.data:
                    return None
                self._reject(raw, f"the database refused it: {exc}")
        return kept, outcomes

    def _log_reuses(self, numbered: list[Message]) -> None:
        """Warn when a station's store gave a seq the database already holds to another event: asked of
        the database (what every receiver stored), not of what this one saw.  The first time per site,
        station and store is logged, then at most one line a minute with how many since the last."""
        if not numbered:
            return
        try:
            reused = self.store.reused(numbered)
        except CentralStoreError as exc:  # stored and acknowledged all the same; central-report counts it
            log.warning("seq_reuse_check_failed", error=str(exc), messages=len(numbered))
            return
        for m, again in zip(numbered, reused):
            times = self._reuses.note((m.site, m.station, m.store)) if again else None
            if times is not None:
                log.warning("seq_reused", site=m.site, station=m.station, store=m.store, seq=m.seq, times=times,
                            hint=REUSE_HINT)

    def _reject(self, message: mqtt.MQTTMessage, reason: str) -> None:
        self.counts["rejected"] += 1
        log.warning("central_message_rejected", topic=message.topic, reason=reason, bytes=len(message.payload))
        try:
            self.store.reject(message.topic, reason, message.payload)
        except Exception as exc:  # the reject table is a courtesy; the message is acknowledged anyway
            log.error("central_reject_store_failed", error=str(exc))

    def _track_seq(self, m: Message) -> None:
        key = (m.site, m.station, m.store or "")
        last = self._max_seq.get(key)
        if last is None and m.store and not any(k[:2] == key[:2] and k[2] for k in self._max_seq):
            last = self._max_seq.get((m.site, m.station, ""))  # an upgraded agent goes on numbering
        if last is not None and m.seq > last + 1:
            log.warning("seq_gap", site=m.site, station=m.station, store=m.store, missing_from=last + 1,
                        missing_to=m.seq - 1)
        if last is None or m.seq > last:
            self._max_seq[key] = m.seq
