"""A TCP relay between a client and a broker that counts the QoS 1 PUBLISHes the client has out.

MQTT 5's Receive Maximum bounds what a client may send unacknowledged; Mosquitto 2.0 announces it
but does not enforce it for QoS 1, so the tests count on the wire instead: every QoS > 0 PUBLISH
from the client raises the count, every PUBACK from the broker lowers it.
"""
from __future__ import annotations

import socket
import threading

from tests.conftest import free_port

PUBLISH, PUBACK = 3, 4


class WireCount:
    """Listens on ``port`` and relays each connection to the broker on ``broker_port``."""

    def __init__(self, broker_port: int):
        self.broker_port = broker_port
        self.port = free_port()
        self.out = 0  # QoS 1 PUBLISHes sent and not yet acknowledged, on the current connection
        self.max_out = 0
        self.published = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for s in list(self._socks):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, upstream]
            with self._lock:
                self.out = 0  # a new connection: what was out on the last one is no longer counted
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        buf = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf = self._count(buf + data, from_client)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _count(self, buf: bytes, from_client: bool) -> bytes:
        """Count the whole packets at the start of ``buf``; returns the partial one left."""
        while len(buf) >= 2:
            length, mult, i = 0, 1, 1
            while True:
                if i >= len(buf):
                    return buf
                length += (buf[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            if len(buf) < i + length:
                return buf
            kind, qos = buf[0] >> 4, (buf[0] >> 1) & 3
            with self._lock:
                if from_client and kind == PUBLISH and qos:
                    self.out += 1
                    self.published += 1
                    self.max_out = max(self.max_out, self.out)
                elif not from_client and kind == PUBACK:
                    self.out -= 1
            buf = buf[i + length:]
        return buf
