"""Dose checks: reference tables, exam matching, the seven check kinds, alerts, local statistics.

Data flows one way: the pipeline stores a report, then :class:`ChecksStage` (in the same
transaction) builds the study view (:mod:`.study`), runs the checks (:mod:`.ct`, :mod:`.drl`,
:mod:`.fluoro`) and records alerts (:mod:`.alerts`) and their outbox rows.  Live streams call
:func:`.fluoro.evaluate_procedure` and :func:`.staff.evaluate_staff` directly.  Rules come from
TOML tables (:mod:`.tables` is their schema, :mod:`.rules` loads them, :mod:`.units` converts
units exactly).  ``alara-edge alerts``, ``ack`` and ``stats`` live in :mod:`.commands`.

The names below are imported on first use, so that :mod:`agent.config` can use the table
schema without loading the checks and the store.
"""
from importlib import import_module
from typing import Any

_EXPORTS = {
    "Alert": "agent.checks.alerts", "acknowledge": "agent.checks.alerts", "list_alerts": "agent.checks.alerts",
    "Rules": "agent.checks.rules", "RulesError": "agent.checks.rules", "load_rules": "agent.checks.rules",
    "ChecksStage": "agent.checks.stage",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agent.checks' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
