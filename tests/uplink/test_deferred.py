"""PUBACK failure codes that mean "not now": 0x97 Quota exceeded (and 0x91 Packet identifier in use) keep the row
and send it again after a pause; the other failure codes are dead letters.

A real Mosquitto cannot be used here: it answers a QoS 1 PUBLISH only with 0x00, 0x10, 0x87 (ACL) or 0x83 (too
large), never 0x97 and the others. So the broker is a stand-in written below, as small as MQTT 5 allows: it
answers CONNECT with CONNACK, PINGREQ with PINGRESP and PUBLISH with a PUBACK carrying the reason code the test
chose (status messages always with success), and keeps what it accepted.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from structlog.testing import capture_logs

from agent.bus import Bus
from agent.uplink import Uplink
from tests.uplink.conftest import enqueue, make_config, wait_for


class RefusingBroker:
    """A minimal MQTT 5 broker stand-in that answers events' PUBLISHes with ``code``."""

    def __init__(self, code: int):
        self.code = code
        self.accepted: list[dict] = []  # event payloads answered with success
        self.statuses: list[dict] = []
        self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            while header := f.read(1):
                length, shift = 0, 0
                while True:
                    byte = f.read(1)[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = f.read(length)
                kind = header[0] >> 4
                if kind == 1:  # CONNECT
                    conn.sendall(b"\x20\x03\x00\x00\x00")
                elif kind == 12:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
                elif kind == 3:  # PUBLISH, QoS 1
                    self._publish(conn, body)
        except (OSError, IndexError):
            return
        finally:
            conn.close()

    def _publish(self, conn: socket.socket, body: bytes) -> None:
        n = int.from_bytes(body[:2], "big")
        topic, pos = body[2:2 + n].decode(), 2 + n
        mid, pos = body[pos:pos + 2], pos + 2
        props, shift = 0, 0
        while True:  # the properties' length, a variable byte integer
            byte = body[pos]
            pos += 1
            props |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        payload = json.loads(body[pos + props:])
        code = 0 if topic.endswith("/status") else self.code
        conn.sendall(b"\x40\x04" + mid + bytes([code, 0]))
        if topic.endswith("/status"):
            self.statuses.append(payload)
        elif code == 0:
            self.accepted.append(payload)
        else:
            self.refused += 1

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def standin():
    made: list[RefusingBroker] = []

    def make(code: int) -> RefusingBroker:
        made.append(RefusingBroker(code))
        return made[-1]

    yield make
    for b in made:
        b.close()


def _row(store, seq: int = 1) -> tuple:
    return store.db.execute("SELECT state, last_error FROM outbox WHERE seq = ?", [seq]).fetchone()


def _alarm(status: dict) -> list:
    return [a for a in status["body"].get("alarms", []) if a["kind"] == "broker_deferred"]


def test_quota_exceeded_keeps_the_event_and_sends_it_once_the_quota_clears(standin, store, tmp_path, running):
    broker = standin(0x97)
    cfg = make_config(tmp_path, broker.port, reconnect_min_s=0.1, reconnect_max_s=0.4)
    bus = Bus()
    (eid,) = enqueue(store, 1, kind="alert")
    with capture_logs() as logs:
        uplink = running(Uplink(cfg, store, bus))
        wait_for(lambda: broker.refused >= 3, what="the alert refused three times: sent again after each pause")
        h = uplink.health()
        # no dead letter waiting for `outbox requeue`; the row is pending, or inflight while it is sent again
        assert h["dead"] == 0 and h["pending"] + h["inflight"] == 1
        state, error = _row(store)
        assert state in ("pending", "inflight") and error == "0x97 Quota exceeded"  # inflight: being sent again
        (alarm,) = [a for a in h["alarms"] if a["kind"] == "broker_deferred"]
        assert alarm["reason"] == "0x97 Quota exceeded"
        wait_for(lambda: broker.statuses and _alarm(broker.statuses[-1]), what="the alarm in the retained status")

        broker.code = 0  # the quota clears
        wait_for(lambda: broker.accepted, timeout=5, what="the alert at the broker")
        assert [m["event_id"] for m in broker.accepted] == [eid]
        wait_for(lambda: _row(store) == ("delivered", None), what="the alert delivered")
        wait_for(lambda: not uplink.health()["alarms"], what="the alarm to clear")
        wait_for(lambda: not _alarm(broker.statuses[-1]), what="a status without the alarm")
    events = [e["event"] for e in logs]
    assert events.count("uplink_broker_deferred") == 1  # once when raised, not at every retry
    assert "outbox_dead_letter" not in events
    (cleared,) = [e for e in logs if e["event"] == "alarm_cleared" and e.get("alarm") == "broker_deferred"]
    assert cleared


@pytest.mark.parametrize("code, held", [(0x91, True), (0x97, True), (0x80, False), (0x83, False), (0x87, False),
                                        (0x90, False), (0x99, False)])
def test_which_refusals_wait_and_which_are_dead_letters(standin, store, tmp_path, running, code, held):
    broker = standin(code)
    cfg = make_config(tmp_path, broker.port, reconnect_min_s=0.05, reconnect_max_s=0.1)
    enqueue(store, 1, kind="alert")
    uplink = running(Uplink(cfg, store, Bus()))
    if held:
        wait_for(lambda: broker.refused >= 2, what="the alert sent again")
        state, error = _row(store)
        assert state in ("pending", "inflight") and error.startswith(f"0x{code:02X} ")  # inflight: sent again
        assert uplink.health()["dead"] == 0
    else:
        wait_for(lambda: uplink.health()["dead"] == 1, what="a dead letter")
        time.sleep(0.5)  # several pauses' worth: a dead letter is not sent again
        assert broker.refused == 1 and _row(store)[0] == "dead"
