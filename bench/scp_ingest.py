"""C-STORE → stored: latency and throughput of the agent's SCP against a bare pynetdicom SCP.

Both run in this process's machine on loopback, fed by the same pynetdicom SCU with the
same reports in the same run.  The bare SCP only writes each received object to a file
(once without and once with fsync); the agent spools with fsync, extracts, and commits to
SQLite (WAL, synchronous=FULL) with every configured stage before it answers.

    python bench/scp_ingest.py [--reports 300] [--corpus ../shared/rdsr-corpus/openrem]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt  # noqa: E402

from agent.sources.dicom.scp import STORAGE_SOP_CLASSES, no_delay  # noqa: E402
from simulator import rdsr  # noqa: E402
from tests.conftest import AgentProcess, free_port  # noqa: E402


def bare_scp(folder: Path, fsync: bool):
    def handle(event):
        data = event.encoded_dataset(include_meta=True)
        path = folder / f"{event.request.AffectedSOPInstanceUID}.dcm"
        with open(path, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        return 0x0000

    ae = AE(ae_title="BARE")  # a plain pynetdicom SCP: what a minimal receiver would be
    for uid in STORAGE_SOP_CLASSES:
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, handle), (evt.EVT_CONN_OPEN, no_delay)])
    return server, ae, port


def measure(port: int, called: str, files: list[Path]) -> dict:
    """Send pre-encoded files (pynetdicom then sends their bytes as they are: no client-side encoding)."""
    ae = AE(ae_title="BENCH")
    metas = {(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in map(pydicom.filereader.read_file_meta_info, files)}
    for uid, ts in sorted(metas):
        ae.add_requested_context(uid, ts)  # one context per transfer syntax: the acceptor picks one per context
    assoc = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
    assert assoc.is_established
    lat = []
    t0 = time.perf_counter()
    for path in files:
        t = time.perf_counter()
        status = assoc.send_c_store(path)
        lat.append((time.perf_counter() - t) * 1000)
        assert status.Status == 0, hex(status.Status)
    elapsed = time.perf_counter() - t0
    assoc.release()
    lat.sort()
    return {"n": len(files), "rate": len(files) / elapsed, "p50": statistics.median(lat),
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "max": lat[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=300)
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "rdsr-corpus" / "openrem")
    args = ap.parse_args()

    corpus = sorted(args.corpus.glob("*RDSR*.dcm")) if args.corpus.is_dir() else []
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "reports").mkdir()
        synthetic = []
        for i in range(args.reports):
            synthetic.append(tmp / "reports" / f"{i}.dcm")
            synthetic[-1].write_bytes(rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{30 + i % 40}.25")])))
        for fsync in (False, True):
            folder = tmp / f"bare-{fsync}"
            folder.mkdir()
            server, ae, port = bare_scp(folder, fsync)
            results.append((f"bare SCP, write{' + fsync' if fsync else ''}", measure(port, "BARE", synthetic)))
            ae.shutdown()
        agent = AgentProcess(tmp / "agent").start()
        try:
            results.append(("alara-edge, full ingest", measure(agent.dicom_port, "ALARA_EDGE", synthetic)))
            if corpus:
                results.append((f"alara-edge, corpus ({len(corpus)} RDSRs)", measure(agent.dicom_port, "ALARA_EDGE", corpus)))
        finally:
            agent.stop()

    print(f"{'receiver':40} {'n':>5} {'reports/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, r in results:
        print(f"{name:40} {r['n']:5d} {r['rate']:10.1f} {r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.2f}")
    bare = results[0][1]["rate"]
    ours = results[2][1]["rate"]
    print(f"\nfull ingest / bare SCP (no fsync) = {ours / bare:.2f}  (target >= 0.8)")
    print(f"full ingest / bare SCP (fsync)    = {ours / results[1][1]['rate']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
