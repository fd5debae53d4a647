"""A simulated modality: sends dose reports to a Storage SCP by C-STORE (pynetdicom SCU).

``python -m simulator.modality --port 11112 FILE_OR_DIR...`` sends files as a modality would;
with no files it sends one synthetic CT report.  ``DemoModality`` (used by
``alara-edge run --demo``) sends a synthetic CT or fluoroscopy report every few seconds,
now and then one above the usual dose so that an alert shows.
"""
from __future__ import annotations

import argparse
import random
import sys
import threading
from pathlib import Path
from typing import Iterable

import pydicom
import structlog
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from agent.commands.common import iter_files
from agent.sources.dicom.scu import echo, send  # noqa: F401  (echo re-exported for tests)
from simulator import rdsr

log = structlog.get_logger("simulator.modality")


def demo_report(rng: random.Random) -> Dataset:
    """A plausible synthetic report; about one in five is high enough to raise an alert."""
    high = rng.random() < 0.2
    if rng.random() < 0.7:
        region, protocol = rng.choice([("Head", "Routine Head"), ("Chest", "Chest Routine"),
                                       ("Abdomen", "Abdomen Pelvis")])
        ctdivol = rng.uniform(70, 120) if high else rng.uniform(8, 45 if region == "Head" else 15)
        length_cm = rng.uniform(15, 40)
        series = [rdsr.CTSeries(protocol=protocol, target_region=region, ctdivol=f"{ctdivol:.2f}",
                                dlp=f"{ctdivol * length_cm:.2f}", phantom="head" if region == "Head" else "body")]
        return rdsr.ct_report(series, accession=f"DEMO{rng.randrange(10**6):06d}", description=f"CT {region}")
    n = rng.randint(3, 8)
    scale = 8 if high else 1
    events = [rdsr.ProjectionEvent(dap=f"{rng.uniform(0.0005, 0.004) * scale:.6f}",
                                   dose_rp=f"{rng.uniform(0.01, 0.2) * scale:.4f}",
                                   exposure_time_ms=str(rng.randint(5000, 60000))) for _ in range(n)]
    description = rng.choice(["Coronary angiography", "PCI", "Lower limb angiography"])  # exams the rules know
    return rdsr.projection_report(events, accession=f"DEMO{rng.randrange(10**6):06d}", description=description)


class DemoModality:
    """Sends :func:`demo_report` to the agent every ``interval_s`` seconds on a background thread."""

    def __init__(self, host: str, port: int, called_ae: str, interval_s: float = 10.0, seed: int | None = None):
        self.host, self.port, self.called_ae, self.interval_s = host, port, called_ae, interval_s
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-modality", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                status = send([demo_report(self.rng)], self.host, self.port, self.called_ae, "DEMO_MODALITY")
                log.info("demo_report_sent", status=f"0x{status[0]:04X}")
            except Exception as exc:
                log.warning("demo_report_failed", error=str(exc))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.modality", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", metavar="FILE_OR_DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11112)
    p.add_argument("--aet", default="SIM_MODALITY", help="calling AE title")
    p.add_argument("--aec", default="ALARA_EDGE", help="called AE title")
    args = p.parse_args(argv)
    named = {Path(name) for name in args.paths if not Path(name).is_dir()}  # files named on purpose
    files, datasets = [], []
    for f in iter_files(args.paths):
        try:
            datasets.append(pydicom.dcmread(f))
        except (InvalidDicomError, OSError) as exc:
            if f in named:
                print(f"{f}: {exc}", file=sys.stderr)
                return 1
            print(f"{f}\tnot DICOM, not sent", file=sys.stderr)  # a README beside the files
            continue
        files.append(f)
    if not args.paths:
        datasets = [demo_report(random.Random())]
    elif not datasets:
        print("no DICOM file to send", file=sys.stderr)
        return 1
    statuses = send(datasets, args.host, args.port, args.aec, args.aet)
    for f, s in zip(files or ["<synthetic>"], statuses):
        print(f"{f}\t0x{s:04X}")
    return 0 if all(s == 0 for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
