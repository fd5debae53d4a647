"""A paho-mqtt 2.x client set up from ``[mqtt]``: protocol, TLS, credentials; reconnect pacing.

Used by the uplink (the agent's sender) and by the central receiver, so both ends agree on how
a broker is reached.  Secrets are never in the configuration: the password comes from a file or
an environment variable, read at each connection attempt.
"""
from __future__ import annotations

import os
import random
import ssl
import time
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig


_SUCCESS = ReasonCode(PacketTypes.PUBACK, "Success")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)


class SenderClient(mqtt.Client):
    """paho's client for the uplink, which reads little else than PUBACKs.

    A PUBACK of two bytes (success and no properties: what a broker answers to nearly every
    message) is handed to ``on_publish`` with one shared success reason and one empty property
    set, instead of paho decoding it into a new ``ReasonCode`` and ``Properties`` (two large
    dictionaries) each time: about a sixth of the uplink thread's CPU in a backlog drain.  Any
    other PUBACK (a failure or a "no matching subscribers" code, properties) goes to paho's own
    decoding, as does everything should a paho release no longer have the state this reads.
    """

    def _handle_pubackcomp(self, cmd):  # type: ignore[no-untyped-def]
        try:
            packet = self._in_packet["packet"]
            lock, out = self._out_message_mutex, self._out_messages
        except (AttributeError, KeyError, TypeError):
            packet = None
        if cmd != "PUBACK" or packet is None or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = packet[0] << 8 | packet[1]
        with lock:
            if mid in out:
                return self._do_on_publish(mid, _SUCCESS, _NO_PROPERTIES)
        return mqtt.MQTT_ERR_SUCCESS


class CredentialsError(Exception):
    """The configured password cannot be read."""


def is_v5(cfg: MqttConfig) -> bool:
    return cfg.protocol == "5"


def new_client(cfg: MqttConfig, client_id: str, *, persistent_session: bool = False,
               manual_ack: bool = False, sender: bool = False) -> mqtt.Client:
    """A client with TLS and credentials applied, not yet connected.

    ``persistent_session`` only matters for MQTT 3.1.1 (clean session off); with MQTT 5 the
    session is chosen at :func:`connect`.  ``sender``: a :class:`SenderClient`.
    """
    protocol = mqtt.MQTTv5 if is_v5(cfg) else mqtt.MQTTv311
    kind = SenderClient if sender else mqtt.Client
    client = kind(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                  clean_session=None if is_v5(cfg) else not persistent_session,
                  reconnect_on_failure=False, manual_ack=manual_ack)
    client.connect_timeout = 10.0
    if uses_tls(cfg):  # a client certificate means TLS: never CONNECT in clear text
        files = [str(f) for f in (cfg.ca_file, cfg.cert_file, cfg.key_file) if f]
        for key in ("ca_file", "cert_file", "key_file"):  # which one: "Permission denied" alone names none
            path = getattr(cfg, key)
            try:
                if path is not None:
                    Path(path).open("rb").close()
            except OSError as exc:
                raise OSError(f"TLS {key} {path}: {exc.strerror}") from None
        try:
            client.tls_set(ca_certs=_path(cfg.ca_file), certfile=_path(cfg.cert_file), keyfile=_path(cfg.key_file),
                           cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as exc:  # name the files: "[Errno 2] No such file or directory" names none
            raise OSError(f"TLS files {', '.join(files) or '(system CAs)'}: {exc}") from None
    if cfg.username:
        client.username_pw_set(cfg.username, read_password(cfg))
    return client


def connect(client: mqtt.Client, cfg: MqttConfig, *, session_expiry_s: Optional[int] = None) -> None:
    """Open the connection and send CONNECT (CONNACK arrives later through the loop).

    ``session_expiry_s`` None: a clean session that ends with the connection; otherwise (MQTT 5)
    resume the previous session and keep it this long after a disconnect.
    """
    kwargs: dict[str, Any] = {"keepalive": cfg.keepalive_s}
    if is_v5(cfg):
        if session_expiry_s is None:
            kwargs["clean_start"] = True
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
            kwargs["clean_start"] = False
            kwargs["properties"] = props
    client.connect(cfg.host, cfg.port, **kwargs)


def uses_tls(cfg: MqttConfig) -> bool:
    return bool(cfg.tls or cfg.ca_file or cfg.cert_file)


def connect_error(cfg: MqttConfig, exc: BaseException) -> str:
    """Why a connection attempt failed, with what to check where the error alone does not say:
    a TLS handshake that the broker ends without a word ("Connection reset by peer") is TLS sent
    to a plain MQTT port, or a client certificate the broker refuses."""
    text = f"connect: {exc}"
    handshake = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLError)
    if uses_tls(cfg) and isinstance(exc, handshake) and not isinstance(exc, ssl.SSLCertVerificationError):
        text += (f" (the TLS handshake with {cfg.host}:{cfg.port} failed: is it a plain MQTT port, usually 1883? "
                 "TLS is on because of tls, ca_file or cert_file; Mosquitto's TLS port is usually 8883)")
    return text


def closed_before_connack(cfg: MqttConfig, reason: str) -> str:
    """A broker that closes the connection before its CONNACK says nothing about why; say what to check."""
    text = f"{reason}: {cfg.host}:{cfg.port} closed the connection before answering CONNECT"
    outdated = client_certificate_outdated(cfg)
    if outdated:
        return f"{text} ({outdated})"
    if uses_tls(cfg):
        return text + (" (it may refuse the client certificate: check cert_file and key_file against the "
                       "broker's cafile, and the broker's log)")
    return text + (" (is it a TLS port, usually 8883? then set ca_file or tls = true; "
                   "plain MQTT is usually port 1883)")


def client_certificate_outdated(cfg: MqttConfig, now: Optional[float] = None) -> Optional[str]:
    """What is wrong with ``cert_file``'s validity period now, if anything.  A broker refusing an expired client
    certificate ends the handshake with a TLS alert that the client often never reads (the connection is reset
    first), so the agent looks at the certificate itself.  None if it is valid or cannot be read here."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)  # the ssl module's own PEM reader
    if cfg.cert_file is None or decode is None:
        return None
    try:
        cert = decode(str(cfg.cert_file))
        not_before, not_after = (ssl.cert_time_to_seconds(cert[k]) for k in ("notBefore", "notAfter"))
    except (OSError, ValueError, KeyError, TypeError):  # ssl.SSLError is an OSError
        return None
    now = time.time() if now is None else now
    if now > not_after:
        return f"the client certificate cert_file {cfg.cert_file} expired on {cert['notAfter']}: renew it"
    if now < not_before:
        return (f"the client certificate cert_file {cfg.cert_file} is not valid before {cert['notBefore']}: "
                "is this box's clock right?")
    return None


def read_password(cfg: MqttConfig) -> Optional[str]:
    if cfg.password_file is not None:
        try:
            lines = Path(cfg.password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CredentialsError(f"cannot read password_file: {exc.strerror}") from exc
        except UnicodeDecodeError:
            raise CredentialsError(f"password_file {cfg.password_file} is not UTF-8 text: save it as UTF-8") from None
        return lines[0] if lines else ""
    if cfg.password_env is not None:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise CredentialsError(f"environment variable {cfg.password_env} is not set")
        return value
    return None


def reason_value(reason_code: Any) -> int:
    """A paho ReasonCode (MQTT 5) or plain int (3.1.1) as an int."""
    return int(getattr(reason_code, "value", reason_code) or 0)


def reason_text(reason_code: Any) -> str:
    value = reason_value(reason_code)
    name = getattr(reason_code, "getName", None)
    return f"0x{value:02X} {name()}" if name else f"0x{value:02X}"


class Backoff:
    """Exponential reconnect delay with jitter (paho has none, so a fleet would reconnect in step).

    Each wait is drawn uniformly from [d/2, d], where d doubles from ``minimum`` to ``maximum``.
    """

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None):
        self.minimum, self.maximum = minimum, maximum
        self._delay = minimum
        self._rng = rng or random.Random()

    def next(self) -> float:
        d = self._delay
        self._delay = min(self._delay * 2, self.maximum)
        return self._rng.uniform(d / 2, d)

    def reset(self) -> None:
        self._delay = self.minimum


def _path(p: Optional[Path]) -> Optional[str]:
    return str(p) if p is not None else None
