"""Logging: structlog, JSON lines on stdout, one event per line, no PHI at any level.

Small processors, composed: add level and UTC timestamp, drop keys that could carry patient
identity (:func:`drop_phi`), render JSON.  The standard library's loggers (pynetdicom's among
them) go through the same chain, and pynetdicom never logs below WARNING because its debug
output dumps whole datasets, patient names included.
"""
from __future__ import annotations

import collections
import logging
import sys
import threading
import time
import warnings
from typing import Any

import structlog
from pynetdicom import _config as pynetdicom_config

PHI_KEYS = frozenset({
    "patient_name", "patient_id", "patient_birth_date", "birth_date", "patientname", "patientid",
    "other_patient_ids", "patient_address", "phi", "person_name", "operator", "physician",
})


def drop_phi(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Remove keys that could hold patient identity, whatever a caller passed."""
    for key in list(event_dict):
        if key.lower() in PHI_KEYS:
            event_dict[key] = "[removed]"
    return event_dict


class _NamedPrintLoggerFactory:
    """PrintLoggers that keep the name given to ``get_logger`` (``add_logger_name`` reads it)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        logger = structlog.PrintLogger(self._stream)
        logger.name = str(args[0]) if args else "agent"  # type: ignore[attr-defined]
        return logger


def configure(level: str = "info", stream: Any = None, fmt: str = "json") -> None:
    stream = stream or sys.stdout
    renderer: Any = structlog.processors.JSONRenderer(sort_keys=False) if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_phi,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_NamedPrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), drop_phi],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    # pynetdicom's DEBUG/INFO output includes dataset dumps (patient names): never below WARNING.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))
    # ... so its standard handlers, which format a description of every PDU and DIMSE message for
    # that output, are not bound (bench/scp_ingest.py: about 8 % of the agent's CPU per report);
    # its warnings and errors are logged as before.
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pydicom").setLevel(max(logging.WARNING, root.level))
    # Python warnings (pydicom's about malformed values, for one) become JSON log events instead of
    # raw lines on stderr; pydicom logs each of its warnings itself too, so that second copy is dropped.
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


REPEAT_LOG_S = 60.0  # the same thing again: at most one line a minute about it, with a count


class Repeats:
    """The same thing happening again and again (a modality retrying an object or an association every
    few seconds, for hours): the first time of each key is logged, then at most one line per
    ``every_s`` with how many times it happened since the last line, so that the log still says what
    is going on without a line per retry.  The least recently seen keys beyond ``kept`` are forgotten."""

    def __init__(self, kept: int = 1024) -> None:
        self._seen: collections.OrderedDict[Any, tuple[float, int]] = collections.OrderedDict()
        self._kept = kept
        self._lock = threading.Lock()

    def note(self, key: Any, every_s: float | None = None) -> int | None:
        """Count one more time of ``key``: the times since its last line (this one included) if a
        line is due now, else None.  ``every_s``: :data:`REPEAT_LOG_S` unless given."""
        every_s = REPEAT_LOG_S if every_s is None else every_s
        now = time.monotonic()
        with self._lock:
            last, count = self._seen.pop(key, (None, 0))
            count += 1
            due = last is None or now - last >= every_s
            self._seen[key] = (now, 0) if due else (last, count)
            while len(self._seen) > self._kept:
                self._seen.popitem(last=False)
        return count if due else None
