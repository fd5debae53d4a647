"""Time ``extract`` per file over the corpus: read + extract, as a received object goes.

For each file the time of ``agent.extract.extract_file`` (fast reader + extraction) is
measured ``--repeat`` times and the median kept; ``--pydicom`` also times the same
extraction from a dataset fully decoded by ``pydicom.dcmread`` (what the lean reader
avoids).  Prints one row per file, then p50 / p95 / max of the per-file times and the total.

    python bench/extract_corpus.py [--corpus ../shared/rdsr-corpus/openrem] [--repeat 5] [--pydicom]
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402

from agent.extract import extract_dataset, extract_file  # noqa: E402
from agent.extract.record import ExtractionError, Rejected  # noqa: E402


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _outcome(path: Path) -> tuple[str, int]:
    try:
        rep = extract_file(path)
        return f"{rep.kind}/{rep.modality}", len(rep.events)
    except Rejected:
        return "rejected", 0
    except ExtractionError:
        return "error", 0


def _quietly(fn):
    def run():
        try:
            fn()
        except (Rejected, ExtractionError):
            pass
    return run


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "rdsr-corpus" / "openrem")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pydicom", action="store_true", help="also time extraction from pydicom.dcmread")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # pydicom's notes about vendors' invalid values

    files = sorted(args.corpus.glob("*.dcm"))
    if not files:
        print(f"no .dcm files in {args.corpus}", file=sys.stderr)
        return 2
    rows, fast, slow = [], [], []
    for path in files:
        outcome, events = _outcome(path)
        ms = _median_ms(_quietly(lambda p=path: extract_file(p)), args.repeat)
        fast.append(ms)
        row = [path.name, f"{path.stat().st_size / 1024:.0f}", outcome, str(events), f"{ms:.1f}"]
        if args.pydicom:
            data = path.read_bytes()
            full = _median_ms(_quietly(lambda d=data: extract_dataset(pydicom.dcmread(io.BytesIO(d), force=True))),
                              max(1, args.repeat // 2))
            slow.append(full)
            row.append(f"{full:.1f}")
        rows.append(row)

    header = ["file", "KiB", "kind/modality", "events", "ms"] + (["ms via dcmread"] if args.pydicom else [])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print()
    print(f"{len(files)} files, median of {args.repeat} runs each, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    for label, values in (("extract_file", fast), ("via dcmread", slow)):
        if values:
            print(f"{label:13s} per file ms: p50 {percentile(values, 0.5):.1f}  p95 {percentile(values, 0.95):.1f}  "
                  f"max {max(values):.1f}   total {sum(values):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
