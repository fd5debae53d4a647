"""C-STORE of a high-dose report → alert banner visible on the console, measured in a real Chromium.

Starts ``alara-edge run`` (a subprocess, as in production) with its console on a free loopback port,
opens the console in headless Chromium at the kiosk size (800x480), then N times: C-STOREs a CT head
report whose CTDIvol (120 mGy) is above the AAPM notification value, times from the start of the
C-STORE to the banner item of the new alert being visible, and acknowledges it through the API so the
banner is empty again.  Prints p50/p95/p99/max in milliseconds; for comparison, the time until the
C-STORE response reaches the sender (association set-up included), and the time of the
acknowledgement (POST → banner gone).

    python bench/console_latency.py [-n 50]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from agent.sources.dicom.scu import send  # noqa: E402
from simulator import rdsr  # noqa: E402
from tests.conftest import AgentProcess  # noqa: E402
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def post(url: str, body: dict, csrf: str) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="alerts to raise (default 50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        agent = AgentProcess(Path(tmp), '[console]\nbind = "127.0.0.1"\n').start()
        base = f"http://127.0.0.1:{agent.console_port}"
        try:
            with urllib.request.urlopen(base + "/api/state", timeout=5) as r:
                csrf = json.loads(r.read())["csrf"]
        except OSError as exc:
            agent.stop()
            print(f"the agent's console does not answer on {base} ({exc}): is it wired into the daemon?")
            return 1
        shown, stored, cleared = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 480})
            page.goto(base + "/")
            page.wait_for_selector("#live.on")
            for i in range(args.n):
                ds = rdsr.ct_report([rdsr.CTSeries("Head routine", "Head", ctdivol="120.0", dlp="1900.0")],
                                    accession=f"BENCH{i:04d}", description="CT Head")
                answered: list[float] = []

                def store() -> None:
                    send([ds], "127.0.0.1", agent.dicom_port)
                    answered.append((time.perf_counter() - t0) * 1000)

                sender = threading.Thread(target=store)
                t0 = time.perf_counter()
                sender.start()
                page.wait_for_selector("#banner [data-alert-id]", state="visible", timeout=10_000)
                shown.append((time.perf_counter() - t0) * 1000)
                sender.join()
                stored.extend(answered)
                with urllib.request.urlopen(base + "/api/alerts?open=1", timeout=10) as r:
                    alert_ids = [a["id"] for a in json.loads(r.read())["alerts"]]
                t1 = time.perf_counter()
                for alert_id in alert_ids:
                    post(f"{base}/api/alerts/{alert_id}/ack", {"by": "BENCH", "reason": "clinically justified"}, csrf)
                page.wait_for_selector("#banner", state="hidden", timeout=10_000)
                cleared.append((time.perf_counter() - t1) * 1000)
            browser.close()
        agent.stop()
    for name, values in (("C-STORE → banner visible", shown), ("C-STORE → response (association incl.)", stored),
                         ("ack POST → banner gone", cleared)):
        print(f"{name}: n={len(values)} p50={statistics.median(values):.0f} ms p95={percentile(values, 95):.0f} ms "
              f"p99={percentile(values, 99):.0f} ms max={max(values):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
