"""Uplink drain rate against mosquitto_pub, and bytes written to disk per event (SD-card wear).

One throwaway Mosquitto on loopback, one consumer (``mosquitto_sub``, QoS 1, counting to N),
the same N payloads:

1. ``mosquitto_pub -l`` (C, QoS 1, MQTT 5, content type + payload format + a user property)
   publishes the N envelopes the uplink would send, one per line (in runs of 50,000 lines:
   mosquitto_pub 2.0.11 silently stops after 65,535 packet ids in one run);
2. the uplink drains N buffered outbox rows (unpaced; window 20, and 50, the default) to the
   same broker: SQLite reads, envelope building, PUBACK bookkeeping and the delivered marks
   (fsync'd) included.

With ``--paho-alone``, also the ceiling of any uplink built on paho-mqtt: the same N envelopes
published by paho alone (external loop API, 20 unacknowledged: Mosquitto's Receive Maximum, QoS 1, MQTT 5, the same
properties packed once; no SQLite, no envelope building, no bookkeeping).

Rates are N / (first publish → consumer has all N).  The senders take turns, ``--rounds`` times
(a fresh outbox for every drain): a shared virtual machine's speed drifts within minutes, so each
round's ratio compares runs made back to back, and the median of those ratios is reported, as in
``bench/scp_ingest.py``.  Then the steady-state disk cost: events
committed one at a time (one transaction each, as producers do) and each delivered before the
next, with the process's ``write_bytes`` from /proc/self/io (file-system level, page
granularity, not counting the ext4 journal) divided by the number of events.

    python bench/uplink_drain.py [--events 100000] [--rounds 3] [--steady 1000] [--windows 20,50] [--paho-alone]
"""
from __future__ import annotations

import argparse
import resource
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.bus import Bus  # noqa: E402
from agent.config import Config  # noqa: E402
from agent.store import Store, outbox  # noqa: E402
from agent.uplink import Uplink  # noqa: E402
from agent.uplink.payloads import envelope  # noqa: E402
from rounds import paired  # noqa: E402
from tests.uplink.broker import Mosquitto  # noqa: E402

TOPIC = "alara/bench-site/ct-01/reading"
CHUNK = 50_000
RECEIVE_MAXIMUM = 20  # Mosquitto's max_inflight_messages: paho alone keeps this many unacknowledged


def body(i: int) -> dict:
    """A reading of realistic size (~400 bytes of JSON)."""
    return {"device": "dosimeter-1", "procedure": f"P{i // 50:06d}", "minute": "2025-03-01T10:21:00Z",
            "dap_Gym2": 0.000123 + i * 1e-9, "air_kerma_mGy": 1.2345 + i * 1e-6, "fluoro_time_s": 12.5,
            "frames": i % 97, "kvp": 81.0, "ma": 12.3, "warnings": [], "source": "serial",
            "notes": "x" * 180}


def config(tmp: Path, port: int, window: int) -> Config:
    return Config.model_validate({
        "station": {"site": "bench-site", "id": "ct-01"},
        "store": {"path": str(tmp / "store.sqlite"), "spool_dir": str(tmp / "spool")},
        "mqtt": {"port": port, "rate_per_s": 0, "window": window, "require_subscriber": True},
    })


def consumer(port: int, n: int) -> subprocess.Popen:
    proc = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", "1", "-V", "mqttv5", "-t", TOPIC,
                             "-C", str(n), "-i", f"bench-sub-{time.monotonic_ns()}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # subscribed
    return proc


def fill(store: Store, n: int, batch: int = 1000) -> None:
    for start in range(0, n, batch):
        with store.transaction() as tx:
            for i in range(start, min(n, start + batch)):
                outbox.enqueue(tx, "reading", outbox.event_id("reading", "bench", i), body(i))


def payload_files(store: Store, folder: Path) -> tuple[list[Path], int]:
    """The envelopes the uplink will send, one per line, in files of CHUNK lines; returns (files, bytes)."""
    files: list[Path] = []
    total = 0
    rows = outbox.next_pending(store.db, 0, 10**9)
    for start in range(0, len(rows), CHUNK):
        files.append(folder / f"payloads-{start // CHUNK}.jsonl")
        with open(files[-1], "wb") as f:
            for row in rows[start:start + CHUNK]:
                line = envelope(kind=row.kind, event_id=row.event_id, seq=row.seq, site="bench-site",
                                station="ct-01", created=row.created_at, body_json=row.body) + b"\n"
                total += len(line) - 1
                f.write(line)
    return files, total


def run_mosquitto_pub(port: int, files: list[Path], n: int) -> float:
    """mosquitto_pub -l, one process per file (2.0.11 loses messages past 65,535 packet ids in one run)."""
    sub = consumer(port, n)
    started = time.monotonic()
    for path in files:
        with open(path, "rb") as f:
            subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-V", "mqttv5", "-t", TOPIC, "-l",
                            "-D", "publish", "content-type", "application/json",
                            "-D", "publish", "payload-format-indicator", "1",
                            "-D", "publish", "user-property", "schema", "alara-edge/reading/1"],
                           stdin=f, check=True)
    if sub.wait(300) != 0:
        raise RuntimeError("the consumer did not receive every mosquitto_pub message")
    return time.monotonic() - started


def run_paho_alone(port: int, files: list[Path], n: int, window: int) -> float:
    """The same payloads through paho alone: publish into free window slots, read PUBACKs, nothing else."""
    import paho.mqtt.client as mqtt

    from agent.uplink.payloads import PackedProperties, user_schema

    payloads = [line.rstrip(b"\n") for path in files for line in open(path, "rb")]
    sub = consumer(port, n)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    acked = [0]
    client.on_publish = lambda *_args: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    sock = client.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while not client.is_connected():
        select.select([sock], [], [], 1.0)
        client.loop_read()
        client.loop_misc()
    props = PackedProperties("reading-bench", user_schema("reading"), 1)
    started = time.monotonic()
    sent = 0
    while acked[0] < n:
        while sent < n and sent - acked[0] < window:
            client.publish(TOPIC, payloads[sent], qos=1, properties=props)  # type: ignore[arg-type]
            sent += 1
        readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], 1.0)
        if readable:
            client.loop_read()
        if writable:
            client.loop_write()
    if sub.wait(300) != 0:
        raise RuntimeError("the consumer did not receive every paho message")
    elapsed = time.monotonic() - started
    client.disconnect()
    return elapsed


def run_uplink(cfg: Config, store: Store, n: int) -> tuple[float, float, float]:
    sub = consumer(cfg.mqtt.port, n)
    cpu0 = time.process_time()
    started = time.monotonic()
    uplink = Uplink(cfg, store, Bus())
    uplink.start()
    if sub.wait(600) != 0:
        raise RuntimeError("the consumer did not receive every uplink message")
    elapsed = time.monotonic() - started
    while uplink.health()["pending"] or uplink.health()["inflight"]:
        time.sleep(0.01)
    settled = time.monotonic() - started
    uplink.stop()
    return elapsed, settled, time.process_time() - cpu0


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def steady_state(cfg: Config, store: Store, n: int) -> float:
    """Bytes written per event when events arrive one at a time and each is delivered before the next."""
    sub = consumer(cfg.mqtt.port, n)
    bus = Bus()
    uplink = Uplink(cfg, store, bus)
    uplink.start()
    while not uplink.health()["connected"]:
        time.sleep(0.01)
    base = outbox.high_water(store.db)
    before = write_bytes()
    for i in range(n):
        with store.transaction() as tx:
            outbox.enqueue(tx, "reading", outbox.event_id("reading", "steady", i), body(base + i))
        bus.publish("outbox", None)
        while True:
            (state,) = store.db.execute("SELECT state FROM outbox WHERE seq = ?", [base + i + 1]).fetchone()
            if state == "delivered":
                break
            time.sleep(0.0005)
    per_event = (write_bytes() - before) / n
    uplink.stop()
    sub.wait(60)
    return per_event


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="times each sender runs, taking turns")
    parser.add_argument("--steady", type=int, default=1000, help="events for the disk-write figure (0: skip it)")
    parser.add_argument("--windows", default="20,50", help="in-flight windows to drain with (comma-separated)")
    parser.add_argument("--paho-alone", action="store_true",
                        help="also publish the same payloads with paho alone (the ceiling of a paho-based uplink)")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    reference = "mosquitto_pub -l QoS 1"
    paho_name = f"paho alone, window {RECEIVE_MAXIMUM}"
    rates: dict[str, list[float]] = {}
    notes: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        broker = Mosquitto(tmp / "broker", persistence=False).start()
        try:
            for n in range(args.rounds):
                for window in windows:
                    cfg = config(tmp / f"r{n}-w{window}", broker.port, window)
                    store = Store.open(cfg.store.path)
                    t0 = time.monotonic()
                    fill(store, args.events)
                    fill_s = time.monotonic() - t0
                    if n == 0 and window == windows[0]:
                        files, total = payload_files(store, tmp)
                    if window == windows[0]:  # the references run first in every round
                        rates.setdefault(reference, []).append(args.events / run_mosquitto_pub(broker.port, files, args.events))
                        if args.paho_alone:
                            rates.setdefault(paho_name, []).append(
                                args.events / run_paho_alone(broker.port, files, args.events, RECEIVE_MAXIMUM))
                    drained, settled, cpu = run_uplink(cfg, store, args.events)
                    name = f"uplink, window {window}, unpaced"
                    rates.setdefault(name, []).append(args.events / drained)
                    notes.setdefault(name, []).append(f"delivered marks committed after {settled:.2f} s, CPU {cpu:.1f} s, "
                                                      f"outbox {outbox.counts(store.db)}")
                    if n == args.rounds - 1 and window == windows[-1] and args.steady:
                        per_event = steady_state(cfg, store, args.steady)
                    store.close()
                    for path in cfg.store.path.parent.glob(cfg.store.path.name + "*"):
                        path.unlink()  # a round's outbox is not needed again: keep the disk use to one at a time
        finally:
            broker.stop()
    print(f"events {args.events}, mean payload {total / args.events:.0f} B, backlog built in {fill_s:.1f} s; "
          f"{args.rounds} rounds, the median of each sender (msg/s of every round in brackets)")
    for name, runs in rates.items():
        print(f"{name:34} {statistics.median(runs):9,.0f} msg/s  [{', '.join(f'{r:,.0f}' for r in runs)}]"
              f"  (100,000 in {100_000 / statistics.median(runs):.1f} s)")
    print("sender / mosquitto_pub: the median of the rounds' ratios (each round's senders run back to back)")
    for name in [sender for sender in rates if sender != reference]:
        print(f"{name:34} = {paired(rates[name], rates[reference])}"
              + ("  target >= 0.5" if name.startswith("uplink") else ""))
    for name, lines in notes.items():
        for i, line in enumerate(lines, 1):
            print(f"{name}, round {i}: {line}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (includes the payload files "
          "built for mosquitto_pub)")
    if args.steady:
        print(f"steady state, {args.steady} events one at a time: {per_event / 1024:.1f} KiB written per event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
