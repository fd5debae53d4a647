"""``alara-edge import FILE_OR_DIR...``: backfill reports from disk, exactly as if they came by C-STORE.

If the agent is running (it holds the store's writer lock), the files are sent to it over
DICOM on the configured port, so they take the very same path; otherwise they are ingested
here directly through the same pipeline and stages.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import sqlite3
import sys
from pathlib import Path

import pydicom

from agent.commands.common import add_config_argument, iter_files, load_config
from agent.store import StoreBusy

HELP = "ingest DICOM files from disk as if they had arrived by C-STORE (backfill)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON line per file")


def part10(path) -> bytes:
    """The file as a complete DICOM Part 10 stream (files without preamble/meta are re-encoded)."""
    data = path.read_bytes()
    if len(data) > 132 and data[128:132] == b"DICM":
        return data
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from agent import logs
    from agent.daemon import START_ERRORS, Agent, start_error

    cfg = load_config(args)
    logs.configure("warning", stream=sys.stderr)
    missing = [name for name in args.paths if not Path(name).exists()]
    for name in missing:  # a mistyped path is the user's to fix (other files in an export folder are not)
        print(f"alara-edge import: {name}: no such file or directory", file=sys.stderr)
    files = [f for f in iter_files(args.paths) if str(f) not in missing]
    if not files:
        return 1 if missing else 0
    try:
        agent = Agent(cfg, with_sources=False)
    except StoreBusy:
        return _send_to_running_agent(cfg, files, args.json) or (1 if missing else 0)
    except START_ERRORS as exc:  # one clear line, as `run` says it
        print(f"alara-edge import: cannot start: {start_error(exc)}", file=sys.stderr)
        return 2
    counts: collections.Counter[str] = collections.Counter()
    try:
        for path in files:
            try:
                encoded = part10(path)
            except Exception as exc:
                counts["error"] += 1
                _print(args.json, path, "error", f"not a DICOM file: {exc}")
                continue
            outcome = agent.pipeline.ingest(encoded, "import")
            counts[outcome.status] += 1
            _print(args.json, path, outcome.status, outcome.reason)
    finally:
        agent.stop()
    print(_summary(counts), file=sys.stderr)
    return 1 if counts["refused"] or missing else 0


def _summary(counts: collections.Counter[str]) -> str:
    """The last line of an import: how many files came to each status."""
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to import"


def _print(as_json: bool, path, status: str, reason: str | None) -> None:
    if as_json:
        print(json.dumps({"file": str(path), "status": status, "reason": reason}))
    else:
        print(f"{status:9} {path}" + (f"  ({reason})" if reason else ""))


IMPORT_AE = "ALARA_IMPORT"  # the calling AE title of a backfill sent to the running agent (kept with each receipt)


def _send_to_running_agent(cfg, files, as_json: bool) -> int:
    from agent.sources.dicom.scu import send

    if not cfg.dicom.enabled:
        print("the agent is running without its DICOM port ([dicom] enabled = false): stop it, then import again",
              file=sys.stderr)
        return 1
    if cfg.dicom.allowed_calling_aes and IMPORT_AE not in cfg.dicom.allowed_calling_aes:
        print(f"the running agent takes reports only from {cfg.dicom.allowed_calling_aes}: add \"{IMPORT_AE}\" to "
              "[dicom] allowed_calling_aes and restart it, or stop it and import again", file=sys.stderr)
        return 1
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(cfg.dicom.bind, cfg.dicom.bind)
    print(f"the agent is running: sending {len(files)} file(s) to it by C-STORE on {host} port {cfg.dicom.port}",
          file=sys.stderr)
    outcomes = _Outcomes(cfg.store.path)
    counts: collections.Counter[str] = collections.Counter()
    failures = 0
    for path in files:  # one file in memory at a time: a department's backfill is thousands
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:
            counts["error"] += 1
            _print(as_json, path, "error", f"not a DICOM file: {exc}")
            continue
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:  # force=True reads any file as a dataset
            counts["error"] += 1
            _print(as_json, path, "error", "not a DICOM file: no SOP Class and Instance UID")
            continue
        try:
            status = send([ds], host, cfg.dicom.port, cfg.dicom.ae_title, IMPORT_AE)[0]
        except (ConnectionError, OSError) as exc:
            print(f"cannot reach the running agent at {host}:{cfg.dicom.port}: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # this file cannot be sent (an attribute pynetdicom cannot encode): the rest can
            counts["error"] += 1
            _print(as_json, path, "error", f"cannot be sent: {type(exc).__name__}: {exc}")
            failures += 1
            continue
        failures += status != 0
        if status == 0:  # the agent confirmed the release once the object was processed: what became of it
            outcome, reason = outcomes.of(str(ds.SOPInstanceUID).strip())
        else:
            outcome = "failed"
            reason = f"status 0x{status:04X}" if status >= 0 else "no answer from the agent (send the file again)"
        counts[outcome] += 1
        _print(as_json, path, outcome, reason)
    outcomes.close()
    print(_summary(counts), file=sys.stderr)
    return 1 if failures else 0


class _Outcomes:
    """What the running agent made of the objects this import sent: the receipts it wrote for them (read from
    the store, which the agent's writer lock leaves readable), so that a backfill through the running agent
    says stored, duplicate, rejected or error per file as an import with the agent stopped does."""

    def __init__(self, store_path: Path):
        from agent.store.db import connect

        try:
            self.db = connect(store_path)
            self.after = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM receipts").fetchone()[0]
        except sqlite3.Error:  # not readable by this user: the answers' status is all there is to say
            self.db = None

    def of(self, sop_instance_uid: str) -> tuple[str, str | None]:
        if self.db is not None:
            try:
                row = self.db.execute(
                    "SELECT status, reason FROM receipts WHERE id > ? AND calling_ae = ? AND sop_instance_uid = ? "
                    "ORDER BY id DESC LIMIT 1", [self.after, IMPORT_AE, sop_instance_uid]).fetchone()
                if row is not None:
                    return row[0], row[1]
                # the same bytes set aside before are not recorded again: say what they were set aside for
                row = self.db.execute(
                    "SELECT status, reason FROM receipts WHERE sop_instance_uid = ? "
                    "AND status IN ('rejected', 'error', 'duplicate_differs') "
                    "ORDER BY id DESC LIMIT 1", [sop_instance_uid]).fetchone()
                if row is not None:
                    return row[0], f"{row[1]} (set aside when received before)"
            except sqlite3.Error:
                pass
        # accepted and durable; not processed within the release's wait (a long backlog)
        return "sent", "accepted by the agent (durable); alara-edge studies shows what became of it"

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
