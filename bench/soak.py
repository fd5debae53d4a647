"""Soak: does a real ``alara-edge run`` stay small and steady over thousands of reports?

Starts, each in its own process: a throwaway Mosquitto (tests/uplink/broker.py), the real central
receiver (``alara-edge central``), a simulated DIAMENTOR DAP meter on a pty (simulator.serial, scenario
holding a slow rate so the live procedure keeps growing), and the agent (tests/conftest.py AgentProcess)
with its own store, the serial meter, the console and the uplink.  A console client holds
``/api/events`` (SSE) open and reads it (optionally a second one holds it open and never reads).
This process sends N mixed CT / RF / DX RDSRs (simulator/rdsr.py; about 4 % high enough to alert)
by C-STORE in associations of 1-10 objects, and every ``--every`` reports samples the agent's
VmRSS, open fds, threads, store file sizes, spool size, the C-STORE round trip p50/p99 of the last
block, and the outbox backlog (/healthz).  The broker is restarted once at N/2 and the time for the
backlog to drain afterwards is measured; at the end the backlog must drain and the central receiver
must hold every event.

    .venv/bin/python bench/soak.py [-n 5000] [--every 500] [--stalled-sse] [--workdir DIR] [--keep]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pynetdicom import AE, evt  # noqa: E402

from agent.sources.dicom.scp import no_delay  # noqa: E402
from simulator import rdsr  # noqa: E402
from tests.conftest import AgentProcess, agent_cmd, agent_env  # noqa: E402
from tests.uplink.broker import Mosquitto  # noqa: E402

SCENARIO = """
driver = "diamentor"
description = "soak: a slow, never-ending fluoroscopy"
seed = 1
after = "hold"

[device]
unit = 1
serial = "000777"

[[phase]]
duration_s = 5
rate = 0.5
"""


# ---------------------------------------------------------------- reports
def make_report(rng: random.Random, i: int):
    """CT 55 %, RF 25 %, DX 20 %; ~4 % above an alert level (CT notification value / fluoro KAP)."""
    high = rng.random() < 0.04
    pat = rdsr.Patient(name=f"Soak^P{i % 997}", id=f"SOAK{i % 997:05d}", age=f"{20 + i % 60:03d}Y",
                       sex=rng.choice("MF"), weight=str(50 + i % 50))
    acc = f"SK{i:07d}"
    r = rng.random()
    if r < 0.55:
        region, proto, ph = rng.choice([("Head", "Routine Head", "head"), ("Chest", "Chest Routine", "body"),
                                        ("Abdomen", "Abdomen Pelvis", "body")])
        series = []
        for _ in range(rng.randint(1, 3)):
            ctdi = rng.uniform(85, 120) if high else rng.uniform(5, 40)
            series.append(rdsr.CTSeries(protocol=proto, target_region=region, ctdivol=f"{ctdi:.2f}",
                                        dlp=f"{ctdi * rng.uniform(15, 40):.2f}", phantom=ph))
        return "CT", high, rdsr.ct_report(series, patient=pat, accession=acc, description=f"CT {region}")
    if r < 0.80:
        scale = 12 if high else 1
        events = [rdsr.ProjectionEvent(dap=f"{rng.uniform(0.0005, 0.004) * scale:.6f}",
                                       dose_rp=f"{rng.uniform(0.01, 0.2) * scale:.4f}",
                                       exposure_time_ms=str(rng.randint(5000, 60000)))
                  for _ in range(rng.randint(3, 8))]
        return "RF", high, rdsr.projection_report(events, patient=pat, accession=acc)
    events = [rdsr.ProjectionEvent(event_type="Stationary Acquisition", protocol="Chest PA",
                                   dap=f"{rng.uniform(0.000005, 0.00003):.7f}", dose_rp=f"{rng.uniform(0.0001, 0.001):.5f}",
                                   kvp="125", exposure_time_ms="10") for _ in range(rng.randint(1, 2))]
    return "DX", False, rdsr.projection_report(events, patient=pat, accession=acc, description="Chest PA",
                                               station="SIMDX1", model="SimDR")


# ---------------------------------------------------------------- console client
class SseClient(threading.Thread):
    def __init__(self, port: int, read: bool = True):
        super().__init__(daemon=True, name="sse-read" if read else "sse-stalled")
        self.port, self.read = port, read
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.connects = 0
        self._stop = threading.Event()
        self.conn = None

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=None)
                self.conn.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
                resp = self.conn.getresponse()
                self.connects += 1
                if resp.status != 200:
                    self.errors.append(f"status {resp.status}")
                    time.sleep(1)
                    continue
                if not self.read:
                    self._stop.wait()  # hold the socket open, read nothing: a frozen kiosk
                    return
                for raw in resp:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    if line.startswith("event:"):
                        name = line[6:].strip()
                        self.counts[name] = self.counts.get(name, 0) + 1
                    if self._stop.is_set():
                        return
                self.errors.append("stream ended")
            except Exception as exc:  # noqa: BLE001
                if self._stop.is_set():
                    return
                self.errors.append(repr(exc))
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        try:
            if self.conn and self.conn.sock:
                self.conn.sock.shutdown(2)
        except OSError:
            pass


# ---------------------------------------------------------------- sampling
def proc_status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    out["tasks"] = len(os.listdir(f"/proc/{pid}/task"))
    return out


def fsize(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0


def dir_size(p: Path) -> tuple[int, int]:
    total = n = 0
    for root, _, files in os.walk(p):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
                n += 1
            except FileNotFoundError:
                pass
    return total, n


def health(port: int) -> dict:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/healthz")
        doc = json.loads(c.getresponse().read())
        c.close()
        return doc
    except Exception as exc:  # noqa: BLE001
        return {"error": repr(exc)}


def backlog(port: int) -> dict:
    return health(port).get("parts", {}).get("backlog", {})


def central_count(db: Path) -> int:
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        n = c.execute("SELECT count(*) FROM central_events").fetchone()[0]
        c.close()
        return n
    except sqlite3.Error:
        return -1


def outbox_counts(db: Path) -> dict:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        cols = [r[1] for r in c.execute("PRAGMA table_info(outbox)")]
        if "state" in cols:
            return dict(c.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {"rows": c.execute("SELECT count(*) FROM outbox").fetchone()[0]}
    finally:
        c.close()


# ---------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--reports", type=int, default=5000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--down-reports", type=int, default=300, help="reports sent while the broker is down")
    ap.add_argument("--stalled-sse", action="store_true", help="also hold a second /api/events open without reading")
    ap.add_argument("--no-serial", action="store_true")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", type=Path, help="write the samples here as JSON")
    args = ap.parse_args()
    import signal

    def _interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly (agent, receiver, meter, broker) on SIGTERM too
    signal.signal(signal.SIGINT, _interrupt)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="alara-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    procs: list[subprocess.Popen] = []
    broker = agent = None
    sse: list[SseClient] = []
    samples: list[dict] = []
    t_start = time.monotonic()
    try:
        broker = Mosquitto(work / "broker").start()
        mqtt = (f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nreconnect_min_s = 0.2\nreconnect_max_s = 2\n'
                f'keepalive_s = 5\n')
        central_db = work / "central.sqlite"
        (work / "central").mkdir(exist_ok=True)
        central_cfg = work / "central" / "central.toml"
        central_cfg.write_text(mqtt + f'\n[central]\ndatabase = "{central_db}"\nclient_id = "soak-central"\n')
        clog = open(work / "central" / "central.log", "ab")
        central = subprocess.Popen(agent_cmd("central", "-c", str(central_cfg)), cwd=work / "central",
                                   env=agent_env(), stdout=clog, stderr=subprocess.STDOUT)
        procs.append(central)
        time.sleep(2)  # its session exists before the agent sends (require_subscriber)

        serial = ""
        if not args.no_serial:
            link = work / "serial" / "by-id" / "usb-SIM_DIAMENTOR-if00-port0"
            link.parent.mkdir(parents=True, exist_ok=True)
            (work / "serial" / "soak.toml").write_text(SCENARIO)
            sim = subprocess.Popen([sys.executable, "-m", "simulator.serial", "diamentor", "--link", str(link),
                                    "--scenario", str(work / "serial" / "soak.toml")], cwd=REPO, env=agent_env(),
                                   stdout=subprocess.PIPE, text=True)
            procs.append(sim)
            assert json.loads(sim.stdout.readline())["event"] == "ready"
            serial = (f'[[serial]]\ndriver = "diamentor"\nport = "{link}"\ndevice = "dap-1"\n'
                      f'poll_interval_s = 0.5\n')
        config = mqtt + f'\n[privacy]\nsecret_file = "{work / "agent" / "site-secret"}"\n\n' + serial
        agent = AgentProcess(work / "agent", config).start(timeout=60)
        pid = agent.proc.pid
        var = agent.workdir / "var"
        console = agent.console_port

        sse.append(SseClient(console, read=True))
        if args.stalled_sse:
            sse.append(SseClient(console, read=False))
        for c in sse:
            c.start()
        time.sleep(1)

        ae = AE(ae_title="SOAK_MODALITY")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        ae.add_requested_context(rdsr.RDSR_SOP_CLASS, "1.2.840.10008.1.2.1")

        def sample(sent: int, lat: list[float], note: str = "") -> dict:
            st = proc_status(pid)
            sp, spn = dir_size(var / "spool")
            bl = backlog(console)
            lat_s = sorted(lat) or [0.0]
            row = {"reports": sent, "t_s": round(time.monotonic() - t_send0, 1),
                   "rss_kB": st["VmRSS"], "hwm_kB": st["VmHWM"], "fds": st["fds"], "threads": st["tasks"],
                   "db": fsize(var / "agent.sqlite"), "wal": fsize(var / "agent.sqlite-wal"),
                   "inbox": fsize(var / "agent-inbox.sqlite"), "inbox_wal": fsize(var / "agent-inbox.sqlite-wal"),
                   "spool": sp, "spool_files": spn,
                   "p50_ms": round(statistics.median(lat_s), 1),
                   "p99_ms": round(lat_s[min(len(lat_s) - 1, int(len(lat_s) * 0.99))], 1),
                   "max_ms": round(lat_s[-1], 1),
                   "pending": bl.get("pending"), "inflight": bl.get("inflight"), "dead": bl.get("dead"),
                   "central": central_count(central_db), "sse": dict(sse[0].counts), "note": note}
            samples.append(row)
            print(json.dumps(row), flush=True)
            return row

        t_send0 = time.monotonic()
        sample(0, [], "before sending")
        sent = 0
        expected_alerts = 0
        kinds = {"CT": 0, "RF": 0, "DX": 0}
        lat: list[float] = []
        failures: list[str] = []
        restarted = False
        drain_after_restart = None
        down_at = None
        while sent < args.reports:
            k = min(rng.randint(1, 10), args.reports - sent)
            batch = []
            for _ in range(k):
                kind, high, ds = make_report(rng, sent + len(batch))
                kinds[kind] += 1
                expected_alerts += high
                batch.append(ds)
            assoc = ae.associate("127.0.0.1", agent.dicom_port, ae_title="ALARA_EDGE",
                                 evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
            if not assoc.is_established:
                failures.append(f"association refused at {sent}")
                time.sleep(1)
                continue
            for ds in batch:
                t = time.perf_counter()
                status = assoc.send_c_store(ds)
                lat.append((time.perf_counter() - t) * 1000)
                code = int(status.Status) if status and "Status" in status else -1
                if code != 0:
                    failures.append(f"report {sent}: status 0x{code & 0xFFFF:04X}")
                sent += 1
                if sent % args.every == 0:
                    pass
            assoc.release()
            # sample at block boundaries (the association is complete)
            while len(samples) - 1 < sent // args.every:
                block = (len(samples)) * args.every
                sample(block, lat[-args.every:])
            if not restarted and sent >= args.reports // 2:
                # the broker goes away midway (stopped, persistence kept), reports keep coming for a
                # while, then it comes back on the same port: the backlog must drain by itself
                restarted = True
                broker.stop()
                down_at = sent
                t_down = time.monotonic()
                print(json.dumps({"broker_stopped_at": sent, "backlog": backlog(console)}), flush=True)
            if restarted and down_at is not None and sent >= down_at + args.down_reports:
                before = backlog(console)
                broker.start()
                t_r = time.monotonic()
                print(json.dumps({"broker_started_at": sent, "down_s": round(t_r - t_down, 1),
                                  "backlog_before": before}), flush=True)
                drain_after_restart = {"stopped_at_report": down_at, "started_at_report": sent,
                                       "down_s": round(t_r - t_down, 1), "t0": t_r, "backlog_before": before}
                down_at = None

                def watch_drain(d=drain_after_restart):
                    peak = 0
                    while time.monotonic() - d["t0"] < 600:
                        b = backlog(console)
                        p = (b.get("pending") or 0) + (b.get("inflight") or 0)
                        peak = max(peak, p)
                        if p == 0:
                            d["drained_s"] = round(time.monotonic() - d["t0"], 1)
                            break
                        time.sleep(0.25)
                    d["peak_after_start"] = peak
                threading.Thread(target=watch_drain, daemon=True).start()
        send_s = time.monotonic() - t_send0

        # drain: everything delivered and the central receiver holds it
        t_d = time.monotonic()
        final_bl = {}
        while time.monotonic() - t_d < 300:
            final_bl = backlog(console)
            if final_bl.get("pending") == 0 and final_bl.get("inflight") == 0:
                break
            time.sleep(1)
        drain_s = time.monotonic() - t_d
        time.sleep(2)
        last = sample(sent, lat[-args.every:], "after final drain")
        ob = outbox_counts(var / "agent.sqlite")
        studies = sqlite3.connect(f"file:{var / 'agent.sqlite'}?mode=ro", uri=True)
        tables = {t: studies.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for (t,) in studies.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
        studies.close()
        summary = {
            "reports": sent, "kinds": kinds, "expected_high": expected_alerts, "cstore_failures": failures[:20],
            "n_failures": len(failures), "send_s": round(send_s, 1), "rate_per_s": round(sent / send_s, 1),
            "final_drain_s": round(drain_s, 1), "final_backlog": final_bl, "outbox": ob,
            "central_events": last["central"], "table_rows": tables,
            "broker_restart": {k: v for k, v in (drain_after_restart or {}).items() if k not in ("t0", "trace")},
            "sse": [{"counts": c.counts, "connects": c.connects, "errors": c.errors[:5]} for c in sse],
            "agent_errors": [e for e in agent.log_events() if e.get("level") in ("error", "critical")][:10],
            "agent_warnings": sorted({e.get("event") for e in agent.log_events() if e.get("level") == "warning"}),
            "total_s": round(time.monotonic() - t_start, 1), "workdir": str(work),
        }
        print(json.dumps({"summary": summary}, indent=1), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"samples": samples, "summary": summary}, indent=1))
        print_table(samples)
        return 0
    finally:
        for c in sse:
            c.stop()
        if agent is not None and agent.proc is not None:
            rc = agent.stop()
            print(f"agent exit code {rc}", flush=True)
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if broker is not None:
            broker.stop()
        if not args.keep and not args.workdir:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


def print_table(samples: list[dict]) -> None:
    cols = ["reports", "t_s", "rss_kB", "fds", "threads", "db", "wal", "inbox", "inbox_wal", "spool",
            "p50_ms", "p99_ms", "pending", "inflight", "central"]
    print(" | ".join(cols))
    for s in samples:
        print(" | ".join(str(s.get(c)) for c in cols))


if __name__ == "__main__":
    sys.exit(main())
