"""The uplink: drains the outbox to the central MQTT broker, at least once, paced, in order.

One thread owns the connection and drives paho's external-loop API (``loop_read``,
``loop_write``, ``loop_misc``) with its own ``select``, so it is woken at once by the bus
("outbox" after each commit) and needs no locks around paho.  Per connection:

* CONNECT with a clean session and a retained *offline* status as the will; on CONNACK rows
  left ``inflight`` go back to ``pending`` and a retained *online* status is published;
* at most ``window`` messages unsettled (published, PUBACK not yet committed), of them at most the
  broker's Receive Maximum unacknowledged (QoS 1), oldest seq first, paced by a token bucket at
  ``rate_per_s`` whose burst is at most one second's worth (and at most the window);
* PUBACK success → ``delivered``; failure reason code (≥ 0x80) → ``dead`` with an alarm, never
  retried, except 0x97 "quota exceeded" and 0x91 "packet identifier in use" (a limit or a state of the
  broker's, not the message's fault) → kept pending, the drain pauses and the ``broker_deferred`` alarm is
  raised until the broker takes messages again; 0x10 "no matching subscribers" → kept pending and the
  drain pauses (the central receiver's session is missing, sending on would lose data) unless
  ``require_subscriber`` is off;
  PUBACKs are committed by :class:`~agent.uplink.ledger.Ledger`, which bounds re-sends to ``window``;
* connection lost, no CONNACK, or no PUBACK within ``ack_timeout_s`` → reconnect after an
  exponential delay with jitter.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from collections import deque
from typing import Any, Optional

import paho.mqtt.client as mqtt
import structlog

from agent.bus import Bus
from agent.config import Config
from agent.store import Store, StoreError, outbox
from agent.store.spool import QUOTA_CLEAR_FRACTION, usage_bytes

from . import retention
from .connection import (Backoff, CredentialsError, closed_before_connack, connect, connect_error, is_v5, new_client,
                         reason_text, reason_value)
from .ledger import Ledger, Outcome
from .payloads import PackedProperties, envelope, now_iso, topic, user_schema
from .status import Alarms, status_message, will_properties

log = structlog.get_logger("agent.uplink")

HOUSEKEEPING_S = 30.0
POISON_DROPS = 3  # connections lost in a row while one row was sent alone: that row is dead-lettered
OUR_OWN_DROPS = ("no PUBACK", "no CONNACK", "store:", "stopping")  # a slow broker is no reason to blame a row
STABLE_S = 60.0  # a connection that lived this long resets the reconnect back-off even without a PUBACK
PREFETCH = 256
STATUS_MIN_S = 1.0  # an alarm raised again (a new count) is sent with the next status at most this often


class Uplink:
    """The sink that sends the outbox to the central broker. ``start()``, ``stop()``, ``health()``."""

    def __init__(self, config: Config, store: Store, bus: Bus):
        self.cfg = config.mqtt
        self.site = config.station.site
        self.station = config.station.id
        self.store = store
        self.bus = bus
        self.client_id = self.cfg.client_id or f"alara-edge-{self.site}-{self.station}"
        self.spool_dir = config.store.spool_dir
        self.quota_bytes = int(config.store.quota_mb * 1024 * 1024) if config.store.quota_mb else None
        self.alarms = Alarms()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unsubscribe = None
        self._health_lock = threading.Lock()
        self._health_db = None
        self.ledger = Ledger(store, self.cfg.require_subscriber, self._wakeup)
        # read by health() from other threads
        self._connected = False
        self._connected_since: Optional[str] = None
        self._last_error: Optional[str] = None
        self._last_delivered_at: Optional[str] = None
        # the uplink thread's own state
        self._db = None
        self._store_id: Optional[str] = None  # the seq series every message names
        self._client: Optional[mqtt.Client] = None
        self._status_mids: set[int] = set()
        self._buffer: deque[outbox.Row] = deque()
        self._cursor = 0
        self._inflight = self.cfg.window  # unacknowledged at once: the window, or the broker's Receive Maximum
        self._max_packet: Optional[int] = None
        self._connack_deadline = 0.0
        self._lost: Optional[str] = None
        self._backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        self._connected_at = 0.0
        self._progressed = False  # a row delivered on the current connection
        self._suspect: Optional[tuple[tuple[int, str, str], int]] = None  # (the row sent alone, losses)
        self._probing = False  # after a connection lost with nothing delivered: one row at a time
        self._pause = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        self._paused_until = 0.0
        self._next_connect = 0.0
        self._burst = min(float(self.cfg.window), max(1.0, self.cfg.rate_per_s))  # at most a second's pace at once
        self._tokens = self._burst
        self._tokens_at = time.monotonic()
        self._next_housekeeping = 0.0
        self._clock = retention.ClockWatch()  # a wall clock set forward must not make fresh deliveries look old
        self._next_status = 0.0
        self._status_at = 0.0  # when the last status went out: an alarm's new count waits STATUS_MIN_S after it

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        try:
            with self.store.transaction() as tx:
                reset = outbox.reset_inflight(tx)
        except StoreError as exc:  # done again on every connection; the agent goes on without it
            log.error("outbox_reset_failed", error=str(exc))
            reset = 0
        self._unsubscribe = self.bus.subscribe(self._on_bus, {"outbox", "alarm"})
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()
        log.info("uplink_started", broker=f"{self.cfg.host}:{self.cfg.port}", client_id=self.client_id,
                 protocol=self.cfg.protocol, window=self.cfg.window, rate_per_s=self.cfg.rate_per_s, requeued=reset)

    def stop(self, timeout: float = 10.0) -> None:
        """Say offline (retained status), disconnect, stop the thread; nothing unsent is lost."""
        if self._unsubscribe:
            self._unsubscribe()
        self._stop.set()
        self._wakeup()
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("uplink_stop_timeout", timeout_s=timeout)
                return
        self.ledger.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._health_lock:
            if self._health_db is not None:
                self._health_db.conn.close()
                self._health_db = None

    def health(self) -> dict[str, Any]:
        """For the console and /healthz: connection, backlog, dead letters, alarms."""
        with self._health_lock:
            if self._health_db is None:
                self._health_db = self.store.reader()
            counts = outbox.counts(self._health_db)
            oldest = outbox.oldest_pending(self._health_db)
        inflight = self.ledger.in_use()
        return {
            "enabled": True,
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "connected": self._connected,
            "connected_since": self._connected_since,
            "pending": max(0, counts.get("pending", 0) + counts.get("inflight", 0) - inflight),
            "inflight": inflight,
            "dead": counts.get("dead", 0),
            "delivered": counts.get("delivered", 0),
            "oldest_pending_created": oldest,
            "last_delivered_at": self._last_delivered_at,
            "last_error": self._last_error,
            "alarms": self.alarms.listing(),
        }

    # -- bus ----------------------------------------------------------------------------------
    def _on_bus(self, topic_name: str, payload: Any) -> None:
        if topic_name == "alarm" and isinstance(payload, dict) and payload.get("kind"):
            if payload.get("cleared"):
                self.alarms.clear(str(payload["kind"]))
            else:
                self.alarms.raise_(str(payload["kind"]), {k: v for k, v in payload.items() if k != "kind"})
        self._wakeup()

    def _wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already pending, or closed at shutdown

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        self._db = self.store.reader()
        self._store_id = outbox.store_id(self._db)
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # a bug must not end delivery: log it, start a fresh connection later
                log.exception("uplink_error")
                self._lost = f"internal error: {type(exc).__name__}: {exc}"
                if self._client is not None:
                    self._drop(self._lost)
                else:
                    self._retry_later(self._lost)
        try:
            self._close()
        finally:
            self._db.conn.close()

    def _step(self) -> None:
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._housekeeping()
            self._next_housekeeping = now + HOUSEKEEPING_S
        if self._client is None:
            if now >= self._next_connect:
                self._open()
            else:
                self._wait([], min(self._next_connect, self._next_housekeeping) - now)
        else:
            self._turn()

    def _turn(self) -> None:
        """One loop turn: wait for the socket, read/write, settle PUBACKs, fill the window."""
        client = self._client
        assert client is not None
        sock = client.socket()
        if sock is None:
            return self._drop(self._lost or "connection lost")
        tls_pending = bool(getattr(sock, "pending", None) and sock.pending())  # TLS bytes already decrypted
        readable, writable = self._wait([sock], 0.0 if tls_pending else self._timeout(), write=client.want_write())
        if sock in readable or tls_pending:
            client.loop_read()
        if sock in writable and client.socket() is not None:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()
        self._record(self.ledger.settle())
        if self._lost is not None or client.socket() is None:
            return self._drop(self._lost or "connection lost")
        now = time.monotonic()
        if not self._connected:
            if now > self._connack_deadline:
                self._drop("no CONNACK")
            return
        oldest = self.ledger.oldest_unacked()
        if oldest is not None and now - oldest > self.cfg.ack_timeout_s:
            return self._drop(f"no PUBACK within {self.cfg.ack_timeout_s:g} s")
        alarm_news = self.alarms.changed.is_set() and now >= self._status_at + STATUS_MIN_S
        status_due = now >= self._next_status or alarm_news
        if status_due and self._unacked() < self._inflight:  # else at the next PUBACK
            self._publish_status("online")
        self._fill(now)

    def _wait(self, socks: list[Any], timeout: float, write: bool = False) -> tuple[list[Any], list[Any]]:
        readable, writable, _ = select.select([*socks, self._wake_r], socks if write else [], [], max(0.0, timeout))
        if self._wake_r in readable:
            try:
                while self._wake_r.recv(512):
                    pass
            except (BlockingIOError, OSError):
                pass
        return readable, writable

    def _timeout(self) -> float:
        """How long the loop may sleep: until a token, the pause end, housekeeping, or 1 s."""
        now = time.monotonic()
        limit = min(self._next_housekeeping - now, 1.0)  # a finished commit wakes the loop itself
        due = self.ledger.commit_due_in()
        if due is not None:
            limit = min(limit, due)
        if self._connected and self._room() and self._has_work():
            if now < self._paused_until:
                return min(limit, self._paused_until - now)
            if self.cfg.rate_per_s and self._tokens < 1:
                return min(limit, (1 - self._tokens) / self.cfg.rate_per_s)
            return 0.0
        return limit

    def _room(self) -> bool:
        """May one more message go out?  At most the window unsettled (the most a failure re-sends), of them
        at most the broker's Receive Maximum unacknowledged; one at a time while a lost connection is explained."""
        if self._probing:
            return not self.ledger.in_use() and self._unacked() < self._inflight
        return self.ledger.in_use() < self.cfg.window and self._unacked() < self._inflight

    def _unacked(self) -> int:
        """QoS 1 messages the broker has not acknowledged yet, outbox rows and status messages alike: its
        Receive Maximum counts them all (a broker that enforces it disconnects a client that sends more)."""
        return self.ledger.unacked() + len(self._status_mids)

    def _has_work(self) -> bool:
        while not self._buffer:
            rows = outbox.next_pending(self._db, self._cursor, PREFETCH)
            if not rows:
                break
            self._cursor = rows[-1].seq
            # read again from the start (after a pause for a missing subscriber): a row still out on this
            # connection is pending in the store until its PUBACK is committed, and must not go out twice
            out = self.ledger.unsettled_seqs()
            self._buffer.extend(row for row in rows if row.seq not in out)
        return bool(self._buffer)

    # -- connecting -----------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            client = new_client(self.cfg, self.client_id, sender=True)
        except (CredentialsError, OSError, ValueError) as exc:
            return self._retry_later(f"client setup: {exc}")
        client.max_inflight_messages_set(self.cfg.window)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        high_water = outbox.high_water(self._db)
        event_id, will = status_message(state="offline", reason="connection lost", site=self.site,
                                        station=self.station, seq=high_water, store=self._store_id)
        client.will_set(self._topic("status"), will, qos=1, retain=True,
                        properties=will_properties(event_id, high_water) if is_v5(self.cfg) else None)
        self._reset_link()
        try:
            connect(client, self.cfg)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake, timeout
            return self._retry_later(connect_error(self.cfg, exc))
        sock = client.socket()
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait behind the window
        self._client = client
        self._connack_deadline = time.monotonic() + max(10.0, self.cfg.keepalive_s)

    def _reset_link(self) -> None:
        self.ledger.forget()
        self._status_mids.clear()
        self._buffer.clear()
        self._cursor = 0
        self._lost = None
        self._inflight = self.cfg.window
        self._max_packet = None

    def _retry_later(self, error: str) -> None:
        delay = self._backoff.next()
        self._next_connect = time.monotonic() + delay
        if error != self._last_error:
            log.warning("uplink_connect_failed", error=error, retry_in_s=round(delay, 2))
        self._last_error = error

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_value(reason_code) >= 0x80:
            self._lost = f"CONNACK {reason_text(reason_code)}"
            return
        receive_max = getattr(properties, "ReceiveMaximum", None)
        if receive_max:
            self._inflight = min(self.cfg.window, receive_max)
        self.ledger.batch = max(1, self.cfg.window // 2)
        self._max_packet = getattr(properties, "MaximumPacketSize", None)
        try:
            with self.store.transaction() as tx:
                outbox.reset_inflight(tx)
        except StoreError as exc:
            self._lost = f"store: {exc}"
            return
        self._connected = True
        self._connected_since = now_iso()
        self._connected_at = time.monotonic()
        self._progressed = False  # the back-off is reset by a PUBACK, not by a CONNACK (a broker that
        # drops the connection at every publish must not be hammered)
        self._last_error = None
        self._tokens = self._burst
        self._next_status = 0.0
        log.info("uplink_connected", broker=f"{self.cfg.host}:{self.cfg.port}", window=self.cfg.window,
                 inflight=self._inflight)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if self._lost is None:  # keep the first cause (a refused CONNACK is followed by a disconnect)
            self._lost = f"disconnected: {reason_text(reason_code)}"

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_code: Any, _props: Any) -> None:
        if mid in self._status_mids:
            self._status_mids.discard(mid)
            if reason_value(reason_code) >= 0x80:
                log.warning("status_rejected", reason=reason_text(reason_code))
        else:
            self.ledger.acked(mid, reason_code)

    def _drop(self, reason: str) -> None:
        """Forget the connection; unacknowledged rows are sent again on the next one."""
        self._record(self.ledger.settle(wait=True))
        client, self._client = self._client, None
        if client is not None:
            sock = client.socket()
            try:
                client.disconnect()
            except Exception:  # the socket may already be gone
                pass
            if sock is not None:
                sock.close()
        was_connected, self._connected = self._connected, False
        self._connected_since = None
        if not was_connected and reason.startswith(("disconnected:", "connection lost")):
            reason = closed_before_connack(self.cfg, reason)
        if was_connected and not reason.startswith(OUR_OWN_DROPS):  # the broker closed it, not our timeouts
            self._suspect_of(self.ledger.unsettled_head(), reason)
        if was_connected and time.monotonic() - self._connected_at >= STABLE_S:
            self._backoff.reset()
        unacked = self.ledger.forget()
        delay = self._backoff.next()
        self._next_connect = time.monotonic() + delay
        if was_connected or reason != self._last_error:  # a broker that keeps refusing is logged once
            log.warning("uplink_disconnected" if was_connected else "uplink_connect_failed", reason=reason,
                        unacknowledged=unacked, retry_in_s=round(delay, 2))
        self._last_error = reason

    # -- sending ----------------------------------------------------------------------------------
    def _fill(self, now: float) -> None:
        if now < self._paused_until:
            return
        if self.cfg.rate_per_s:
            self._tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self.cfg.rate_per_s)
        self._tokens_at = now
        client = self._client
        assert client is not None
        v5 = is_v5(self.cfg)
        sent = now_iso()
        while self._room() and (not self.cfg.rate_per_s or self._tokens >= 1) and self._has_work():
            row = self._buffer.popleft()
            payload = envelope(kind=row.kind, event_id=row.event_id, seq=row.seq, site=self.site,
                               station=self.station, created=row.created_at, body_json=row.body, sent=sent,
                               store=self._store_id)
            if self._max_packet and len(payload) + 512 > self._max_packet:
                self._dead_letter(row.seq, row.event_id, row.kind, f"payload of {len(payload)} bytes exceeds the "
                                                                   f"broker's maximum packet size {self._max_packet}")
                continue
            props = PackedProperties(row.event_id, user_schema(row.kind), row.seq) if v5 else None
            info = client.publish(self._topic(row.kind), payload, qos=1, properties=props)  # type: ignore[arg-type]
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost = f"publish: {mqtt.error_string(info.rc)}"
                return
            self.ledger.sent(info.mid, row, now)
            self._tokens -= 1

    def _record(self, outcome: Optional[Outcome]) -> None:
        """React to a commit of PUBACKs: delivery time, dead-letter alarms, the pauses (no subscriber, deferred)."""
        if outcome is None:
            return
        if outcome.error is not None:
            log.error("outbox_settle_failed", error=str(outcome.error), acknowledged=len(outcome.delivered))
            self._lost = f"store: {outcome.error}"
            return
        if outcome.delivered:
            self._progressed, self._probing = True, False
            self._backoff.reset()
            self._last_delivered_at = outcome.at
            self._pause.reset()
            self.alarms.clear("no_subscriber")
            if not outcome.deferred:  # the broker takes messages again
                self.alarms.clear("broker_deferred")
        for seq, event_id, kind, reason in outcome.dead:
            self._announce_dead(seq, event_id, kind, reason)
        if outcome.retry:
            self._no_subscriber(len(outcome.retry))
        if outcome.deferred:
            self._deferred(outcome.deferred)

    def _no_subscriber(self, held: int) -> None:
        """Nobody subscribed: the broker would have dropped these. Keep them and pause the drain."""
        now = self._hold()
        if not self.alarms.active("no_subscriber"):
            log.error("uplink_no_subscriber", topic=self._topic("#"), held=held,
                      retry_in_s=round(self._paused_until - now, 2),
                      hint="the central receiver's session is missing at the broker; nothing is dropped")
        self.alarms.raise_("no_subscriber")

    def _deferred(self, rows: list[tuple[int, str]]) -> None:
        """The broker refused these for now (0x97 Quota exceeded, 0x91 Packet identifier in use: see
        :data:`~agent.uplink.ledger.DEFERRED`): keep them, pause the drain, send them again after it."""
        now = self._hold()
        reason = rows[-1][1]
        if not self.alarms.active("broker_deferred"):
            log.error("uplink_broker_deferred", reason=reason, held=len(rows), first_seq=min(s for s, _ in rows),
                      retry_in_s=round(self._paused_until - now, 2),
                      hint="the broker refused these for now (a quota or limit of its own); they are kept and sent "
                           "again with growing pauses; nothing is dropped. If it lasts, check the broker's limits")
        self.alarms.raise_("broker_deferred", {"reason": reason})

    def _hold(self) -> float:
        """Pause the drain and read the backlog again from its start when it ends; returns now.

        The pause grows once per attempt: the PUBACKs of the other rows that were out when it began come
        in later commits (a window of 50 is two or three of them) and are part of the same attempt."""
        now = time.monotonic()
        if now >= self._paused_until:
            self._paused_until = now + self._pause.next()
        self._buffer.clear()
        self._cursor = 0
        return now

    def _suspect_of(self, head: Optional[tuple[int, str, str]], reason: str) -> None:
        """A connection was lost with no row delivered on it while ``head`` (seq, event_id, kind) was
        unacknowledged.  The next connections send one row at a time; if one of them is lost
        :data:`POISON_DROPS` times in a row while that row alone was out, it is what the broker will not
        take (too large for an MQTT 3.1.1 broker, say) and it is dead-lettered with an alarm, so that it
        cannot hold every later message back for ever."""
        if self._progressed or head is None:
            self._suspect, self._probing = None, False
            return
        if not self._probing:
            self._probing = True
            return
        count = self._suspect[1] + 1 if self._suspect and self._suspect[0] == head else 1
        self._suspect = (head, count)
        if count >= POISON_DROPS:
            self._suspect, self._probing = None, False
            why = f"the broker closed the connection each of the {count} times it was sent ({reason})"
            self._dead_letter(*head, why)

    def _dead_letter(self, seq: int, event_id: str, kind: str, reason: str) -> None:
        with self.store.transaction() as tx:
            outbox.settle(tx, dead=[(seq, reason)])
        self._announce_dead(seq, event_id, kind, reason)

    def _announce_dead(self, seq: int, event_id: str, kind: str, reason: str) -> None:
        log.error("outbox_dead_letter", seq=seq, event_id=event_id, kind=kind, reason=reason,
                  hint="not retried; fix the cause, then `alara-edge outbox requeue`")
        self.bus.publish("alarm", {"kind": "outbox_dead_letter", "seq": seq, "event_id": event_id,
                                   "message_kind": kind, "reason": reason})  # comes back to _on_bus

    # -- status -----------------------------------------------------------------------------------
    def _topic(self, kind: str) -> str:
        return topic(self.cfg.topic_prefix, self.site, self.station, kind)

    def _publish_status(self, state: str, reason: Optional[str] = None) -> None:
        client = self._client
        if client is None:
            return
        self.alarms.changed.clear()
        seq = outbox.high_water(self._db)
        event_id, payload = status_message(state=state, reason=reason, site=self.site, station=self.station, seq=seq,
                                           health=self.health() if state == "online" else None, store=self._store_id)
        props = PackedProperties(event_id, user_schema("status"), seq) if is_v5(self.cfg) else None
        info = client.publish(self._topic("status"), payload, qos=1, retain=True, properties=props)  # type: ignore[arg-type]
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._status_mids.add(info.mid)
        self._status_at = time.monotonic()
        self._next_status = self._status_at + self.cfg.status_interval_s

    # -- housekeeping ---------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        try:
            self._clock.correct(self.store)
            retention.prune(self.store, self.spool_dir, self.cfg.retention_days)
        except StoreError as exc:
            log.error("outbox_prune_failed", error=str(exc))
        if self.quota_bytes:
            used = usage_bytes(self.store, self._db)
            if used >= self.quota_bytes:
                if not self.alarms.active("store_quota_reached"):
                    log.error("store_quota_reached", used_bytes=used, quota_bytes=self.quota_bytes)
                self.alarms.raise_("store_quota_reached", {"used_bytes": used, "quota_bytes": self.quota_bytes})
            elif used < QUOTA_CLEAR_FRACTION * self.quota_bytes:  # and no C-STORE refused for a while
                self.alarms.clear("store_quota_reached", quiet_s=2 * HOUSEKEEPING_S)
        if not self.ledger.in_use() and not self._buffer:
            self._cursor = 0  # pick up rows queued again by `alara-edge outbox requeue`

    def _close(self) -> None:
        """On stop: retained offline status (once the broker's Receive Maximum has room for it), wait briefly
        for outstanding PUBACKs, disconnect."""
        client = self._client
        if client is None or not self._connected:
            if client is not None:
                self._drop("stopping")
            return
        deadline = time.monotonic() + 2.0
        offline = False
        while client.socket() is not None:
            late = time.monotonic() >= deadline
            if not offline and (late or self._unacked() < self._inflight):  # within the Receive Maximum if it can
                self._publish_status("offline", reason="agent stopped")
                offline = True
            if late or offline and not (self._status_mids or self.ledger.in_use()):
                break
            sock = client.socket()
            readable, writable = self._wait([sock], 0.05, write=client.want_write())
            if sock in readable:
                client.loop_read()
            if client.socket() is not None and sock in writable:
                client.loop_write()
            self._record(self.ledger.settle())
        self._record(self.ledger.settle(wait=True))
        client.disconnect()
        if client.socket() is not None:
            client.loop_write()
        self._client = None
        self._connected = False
        log.info("uplink_stopped")
