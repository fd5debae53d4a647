"""C-STORE complete → alert committed: latency of the dose checks over real DICOM on loopback.

The agent's Storage SCP, pipeline and store run in this process with the checks stage
(built-in defaults plus the UK national DRL table, so the DRL and rolling-median checks
run too).  A pynetdicom SCU sends synthetic RDSRs that each raise at least one alert: CT
head series above the AAPM notification value, and fluoroscopy studies above the NCRP 168
first notification.  Three figures per report:

- received → committed: from the moment the SCP has the complete object (the receipt's
  time, before spooling) to the moment the transaction holding the report *and its alerts*
  has committed and the bus announces them;
- the C-STORE round trip as the modality sees it (the SCP answers only after that commit);
- the checks stage alone, inside the transaction.

The same reports are also sent to an agent without the checks stage, to show what the
checks add.

    python bench/checks_latency.py [--reports 300]
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pynetdicom import AE, evt  # noqa: E402

from agent import logs  # noqa: E402
from agent.bus import Bus  # noqa: E402
from agent.checks import ChecksStage, load_rules  # noqa: E402
from agent.config import ChecksConfig, DicomConfig  # noqa: E402
from agent.pipeline import Pipeline  # noqa: E402
from agent.sources.dicom.scp import DicomSource, no_delay  # noqa: E402
from agent.store import Store  # noqa: E402
from simulator import rdsr  # noqa: E402

UK_TABLE = REPO / "config" / "reference-levels" / "uk-ukhsa-2024-adult-ct.toml"


class TimedStage:
    """The checks stage, with the time it spends per report recorded."""

    def __init__(self, stage: ChecksStage):
        self.stage = stage
        self.ms: list[float] = []

    def __call__(self, tx, ingest) -> None:
        t = time.perf_counter()
        self.stage(tx, ingest)
        self.ms.append((time.perf_counter() - t) * 1000)


def reports(n: int) -> list:
    """Alternately a CT head study (series above 80 mGy) and a fluoroscopy study above 3 Gy Ka,r."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(rdsr.ct_report([rdsr.CTSeries("Topogram", ctdivol="0.12", dlp="4.1",
                                                     acquisition_type="Constant Angle Acquisition"),
                                       rdsr.CTSeries("Head", ctdivol=f"{80 + i % 17}.25", dlp=f"{700 + i % 190}.5")]))
        else:
            out.append(rdsr.projection_report([rdsr.ProjectionEvent(dap="0.0125", dose_rp="1.6", exposure_time_ms="600000"),
                                               rdsr.ProjectionEvent(dap="0.0100", dose_rp="1.5", exposure_time_ms="300000")],
                                              description="Coronary angiography"))
    return out


def run(datasets: list, stages: list, folder: Path) -> tuple[list[float], list[float], Store]:
    """(C-STORE round trips, received → committed) in ms, and the store."""
    store = Store.open(folder / "agent.sqlite")
    bus = Bus()
    committed: list[float] = []

    def on_report(_topic, ingest) -> None:  # published right after the commit
        received = dt.datetime.strptime(ingest.receipt.received_at, "%Y-%m-%dT%H:%M:%S.%fZ")
        committed.append((time.time() - received.replace(tzinfo=dt.timezone.utc).timestamp()) * 1000)

    bus.subscribe(on_report, {"report"})
    pipeline = Pipeline(store, folder / "spool", "bench-room", bus, stages=stages)
    source = DicomSource(DicomConfig(bind="127.0.0.1", port=0), pipeline)
    pipeline.start()
    source.start()
    ae = AE(ae_title="BENCH")
    for uid in sorted({str(d.SOPClassUID) for d in datasets}):
        ae.add_requested_context(uid, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", source.port, ae_title="ALARA_EDGE", evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
    assert assoc.is_established
    latencies = []
    try:
        for ds in datasets:
            t = time.perf_counter()
            status = assoc.send_c_store(ds)
            latencies.append((time.perf_counter() - t) * 1000)
            assert status.Status == 0, hex(status.Status)
    finally:
        assoc.release()
        source.stop()
        pipeline.stop()
    return latencies, committed, store


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name:52} {len(ms):5d} {statistics.median(ms):8.2f} {p99:8.2f} {ms[-1]:8.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=300)
    args = ap.parse_args()
    logs.configure("warning")
    rules = load_rules(ChecksConfig(tables=[UK_TABLE]))
    datasets = reports(args.reports)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "plain").mkdir()
        (tmp / "checks").mkdir()
        plain, plain_committed, store = run(datasets, [], tmp / "plain")
        store.close()
        timed = TimedStage(ChecksStage(rules))
        checked, committed, store = run(datasets, [timed], tmp / "checks")
        reports_with_alert = store.db.execute("SELECT COUNT(DISTINCT study_instance_uid) FROM alerts").fetchone()[0]
        alerts = store.db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
        store.close()
    print(f"{'':52} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(summary("received → committed, no checks", plain_committed))
    print(summary("received → report and alerts committed, with checks", committed))
    print(summary("C-STORE round trip, no checks", plain))
    print(summary("C-STORE round trip, with checks", checked))
    print(summary("checks stage alone (inside the transaction)", timed.ms))
    print(f"\n{alerts} alerts committed for {reports_with_alert} of {len(datasets)} studies "
          f"(every study is built to raise at least one)")
    p99 = sorted(committed)[min(len(committed) - 1, int(len(committed) * 0.99))]
    print(f"p99 C-STORE complete → alert committed: {p99:.1f} ms (target <= 50 ms)")
    return 0 if reports_with_alert == len(datasets) else 1


if __name__ == "__main__":
    sys.exit(main())
