"""``alara-edge extract FILE_OR_DIR...``: one JSON object per input file (JSON Lines)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import pydicom

from agent import phi
from agent.commands.common import iter_files
from agent.extract import extract_file
from agent.extract.record import Rejected

HELP = ("print the dose values of DICOM files as JSON Lines (no patient identity unless --include-phi: a free text "
        "that holds the patient's name, id or birth date is printed as [removed])")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    parser.add_argument("--include-phi", action="store_true", help="also print patient name, id and birth date")


def run(args: argparse.Namespace) -> int:
    # pydicom warns on stderr about invalid values in vendors' headers; the record's warnings say what matters
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    failures = 0
    for path in iter_files(args.paths):
        out: dict = {"file": str(path)}
        try:
            report = extract_file(path)
            out["status"] = "ok"
            out["report"] = report.to_dict(include_phi=args.include_phi)
            found = None if args.include_phi else phi.pattern(report.phi)
            if found is not None:  # a modality may have copied the patient's identity into free text
                phi.scrub_tree(out["report"], found)
        except Rejected as exc:
            out.update(status="rejected", reason=_without_identity(str(exc), path, args.include_phi))
        except Exception as exc:  # unreadable file: say why, go on with the next one
            reason = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
            out.update(status="error", reason=_without_identity(reason, path, args.include_phi))
            failures += 1
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    return 1 if failures else 0


def _without_identity(reason: str, path, include_phi: bool) -> str:
    """The reason a file gave no report, without the patient's name, ids or birth date that it may quote (a
    document title, a value that could not be read), unless ``--include-phi``."""
    if include_phi:
        return reason
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=["PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                                                "OtherPatientIDsSequence"])
    except Exception:  # not readable as DICOM: nothing of the patient's can be known, nor quoted
        return reason
    return phi.redact(reason, phi.header_pattern(header))
