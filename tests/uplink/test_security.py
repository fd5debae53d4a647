"""TLS with client certificates (require_certificate true) and username/password from a file or the environment."""
from __future__ import annotations

import subprocess

import pytest

from agent.bus import Bus
from agent.uplink import Uplink
from tests.uplink.broker import Mosquitto
from tests.certs import make_pki
from tests.uplink.conftest import central_event_ids, enqueue, make_config, wait_for

# the broker on 127.0.0.1:1883 with one client id: these run on one xdist worker, one after the other
pytestmark = pytest.mark.xdist_group("system-broker")


def test_tls_with_client_certificate_required(tmp_path, store, running, central):
    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", anonymous=False, listener_extra="\n".join([
        f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
        "require_certificate true", "use_identity_as_username true"])).start()
    try:
        tls = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        cfg = make_config(tmp_path, broker.port, **tls)
        central(cfg)
        ids = enqueue(store, 10)
        running(Uplink(cfg, store, Bus()))
        wait_for(lambda: sorted(central_event_ids(cfg)) == sorted(ids), what="10 messages over TLS")

        # the same broker refuses a client without a certificate, and one whose certificate another CA signed
        for name, extra in (("nocert", {"ca_file": str(pki.ca)}),
                            ("stranger", {"ca_file": str(pki.ca), "cert_file": str(pki.stranger_cert),
                                          "key_file": str(pki.stranger_key)})):
            other = make_config(tmp_path / name, broker.port, **extra)
            from agent.store import Store
            other_store = Store.open(other.store.path)
            try:
                enqueue(other_store, 1)
                uplink = Uplink(other, other_store, Bus())
                uplink.start()
                try:
                    wait_for(lambda: uplink.health()["last_error"], what=f"{name} to be refused")
                    assert not uplink.health()["connected"] and uplink.health()["pending"] == 1
                finally:
                    uplink.stop()
            finally:
                other_store.close()
    finally:
        broker.stop()


def test_username_and_password_from_a_file_or_the_environment(tmp_path, store, running, central, monkeypatch):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "ct-01", "s3cret-ct"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "central", "s3cret-central"], check=True)
    broker = Mosquitto(tmp_path / "broker", anonymous=False, extra=f"password_file {passwords}").start()
    try:
        secret_file = tmp_path / "mqtt-password"
        secret_file.write_text("s3cret-ct\n")
        monkeypatch.setenv("CENTRAL_MQTT_PASSWORD", "s3cret-central")
        cfg = make_config(tmp_path, broker.port, username="ct-01", password_file=str(secret_file))
        central_cfg = make_config(tmp_path, broker.port, username="central", password_env="CENTRAL_MQTT_PASSWORD")
        central(central_cfg)

        secret_file.write_text("wrong\n")
        uplink = running(Uplink(cfg, store, Bus()))
        ids = enqueue(store, 5)
        wait_for(lambda: "CONNACK" in (uplink.health()["last_error"] or ""), what="a refused CONNACK")
        assert "Not authorized" in uplink.health()["last_error"] or "Bad user name" in uplink.health()["last_error"]
        secret_file.write_text("s3cret-ct\n")  # read again at the next attempt
        wait_for(lambda: sorted(central_event_ids(cfg)) == sorted(ids), what="delivery once the password is right")
    finally:
        broker.stop()


def test_a_client_certificate_alone_means_tls_never_a_password_in_clear_text(tmp_path):
    """cert_file and key_file without ca_file or tls = true: the uplink spoke plain MQTT and sent the password
    in its CONNECT; the first byte on the wire must open a TLS handshake (0x16), not a CONNECT (0x10)."""
    import contextlib
    import socket
    import threading

    from agent.uplink.connection import connect, new_client

    pki = make_pki(tmp_path / "pki")
    (tmp_path / "pw").write_text("s3cret-ct\n")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        cfg = make_config(tmp_path, listener.getsockname()[1], cert_file=str(pki.client_cert),
                          key_file=str(pki.client_key), username="ct-01", password_file=str(tmp_path / "pw"))
        client = new_client(cfg.mqtt, "tls-probe")

        def attempt():
            with contextlib.suppress(Exception):  # the listener never answers the handshake
                connect(client, cfg.mqtt)
                client.loop_write()

        threading.Thread(target=attempt, daemon=True).start()
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            assert conn.recv(1) == b"\x16"


def test_tls_files_that_cannot_be_read_are_named_in_the_error(tmp_path):
    import pytest

    from agent.uplink.connection import new_client

    cfg = make_config(tmp_path, 1883, ca_file=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(OSError, match="missing-ca.pem"):
        new_client(cfg.mqtt, "x")


def test_plain_mqtt_to_a_tls_port_and_tls_to_a_plain_port_say_what_to_check(tmp_path, store):
    """Either slip left only "disconnected: 0x80 Unspecified error" or "Connection reset by peer" in the log
    and /healthz; the error must point at the port and the TLS keys."""
    pki = make_pki(tmp_path / "pki")
    tls_broker = Mosquitto(tmp_path / "tls-broker", listener_extra="\n".join([
        f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}"])).start()
    plain_broker = Mosquitto(tmp_path / "plain-broker").start()
    try:
        cases = ((tls_broker.port, {}, "is it a TLS port"),
                 (plain_broker.port, {"ca_file": str(pki.ca)}, "is it a plain MQTT port"))
        for n, (port, tls, hint) in enumerate(cases):
            uplink = Uplink(make_config(tmp_path / str(n), port, **tls), store, Bus())
            uplink.start()
            try:
                wait_for(lambda: uplink.health()["last_error"], what="a failed connection")
                assert hint in uplink.health()["last_error"]
            finally:
                uplink.stop()
    finally:
        tls_broker.stop()
        plain_broker.stop()


def test_the_tls_file_that_cannot_be_read_is_the_one_named(tmp_path):
    """A client key the agent's user may not read was reported as "TLS files CA, CERT, KEY: Permission denied",
    leaving hospital IT to guess which of the three to fix."""
    import pytest

    from agent.uplink.connection import new_client

    pki = make_pki(tmp_path / "pki")
    key = tmp_path / "unreadable.key"  # missing here: the tests may run as root, who reads any file
    cfg = make_config(tmp_path, 1883, ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(key))
    with pytest.raises(OSError) as caught:
        new_client(cfg.mqtt, "x")
    assert f"key_file {key}" in str(caught.value) and str(pki.ca) not in str(caught.value)


def expired_client(tmp_path):
    """A broker that requires client certificates, and a config whose client certificate has expired."""
    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", anonymous=False, listener_extra="\n".join([
        f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
        "require_certificate true", "use_identity_as_username true"])).start()
    cfg = make_config(tmp_path, broker.port, ca_file=str(pki.ca), cert_file=str(pki.expired_cert),
                      key_file=str(pki.expired_key))
    return pki, broker, cfg


def test_a_client_certificate_the_broker_refuses_as_expired_is_named_so(tmp_path, store):
    """A station whose client certificate had expired showed only "disconnected: 0x80 Unspecified error ... check
    cert_file and key_file against the broker's cafile": the broker's TLS alert saying "certificate expired" is
    mostly lost to the reset that follows it, so hospital IT checked the CA instead of renewing the certificate."""
    pki, broker, cfg = expired_client(tmp_path)
    try:
        enqueue(store, 1)
        uplink = Uplink(cfg, store, Bus())
        uplink.start()
        try:
            wait_for(lambda: uplink.health()["last_error"], what="the expired certificate to be refused")
            error = uplink.health()["last_error"]
            assert f"the client certificate cert_file {pki.expired_cert} expired on" in error
            assert "closed the connection before answering CONNECT" in error
            assert not uplink.health()["connected"] and uplink.health()["pending"] == 1
        finally:
            uplink.stop()
    finally:
        broker.stop()


def test_a_central_receiver_whose_client_certificate_expired_says_so_in_its_log(tmp_path):
    """The central receiver with an expired client certificate logged only "central_disconnected reason=disconnected:
    0x80 Unspecified error" at every attempt, nothing about the certificate, while the agent says what to renew."""
    from structlog.testing import capture_logs

    from agent.central.receiver import Receiver

    pki, broker, cfg = expired_client(tmp_path)
    try:
        with capture_logs() as logs:
            rx = Receiver(cfg).start()
            try:
                wait_for(lambda: [e for e in logs if e["event"] == "central_disconnected"], what="a refused connection")
            finally:
                rx.stop()
        assert not rx.connected.is_set()
        reason = next(e for e in logs if e["event"] == "central_disconnected")["reason"]
        assert f"the client certificate cert_file {pki.expired_cert} expired on" in reason, reason
        assert "renew it" in reason
    finally:
        broker.stop()
