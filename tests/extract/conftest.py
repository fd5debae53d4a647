"""Fixtures for the extraction tests: the corpus files and their (cached) records."""
from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import pytest

from agent.extract import extract_file
from agent.extract.record import Event, Report
from tests.conftest import CORPUS


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.dcm"))


def corpus_index() -> dict[str, dict]:
    """files.json: what the corpus README states about each file (event counts, SOP class...)."""
    return {f["file"]: f for f in json.loads((CORPUS / "files.json").read_text())}


@lru_cache(maxsize=None)
def _extract(name: str) -> Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's notes about invalid VRs in some vendors' headers
        return extract_file(CORPUS / name)


@pytest.fixture
def report():
    """``report("file.dcm")`` → the extracted record (each file is read once per test session)."""
    return _extract


def event(rep: Report, uid: str) -> Event:
    """The event with Irradiation Event UID ``uid`` (fails clearly if it is missing)."""
    found = [e for e in rep.events if e.irradiation_event_uid == uid]
    assert len(found) == 1, f"event {uid} found {len(found)} times"
    return found[0]
