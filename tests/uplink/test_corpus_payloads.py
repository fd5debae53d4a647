"""Every object of the shared corpus through the real pipeline (extraction, checks, the report stage):
each queued message validates against its schema, and no patient name, birth date or id leaves."""
from __future__ import annotations

import json
import re

import pydicom
import pytest

from agent.bus import Bus
from agent.checks import ChecksStage, load_rules
from agent.pipeline import Pipeline
from agent.store import outbox
from agent.uplink import ReportOutboxStage
from agent.uplink.payloads import envelope
from tests.uplink.conftest import make_config
from tests.uplink.schemas import errors

# the broker on 127.0.0.1:1883 with one client id: these run on one xdist worker, one after the other
pytestmark = pytest.mark.xdist_group("system-broker")


@pytest.fixture(scope="module")
def queued(corpus, tmp_path_factory):
    """(rows, identities): the outbox after importing the corpus, and each file's patient identity."""
    from agent.store import Store

    tmp = tmp_path_factory.mktemp("corpus")
    cfg = make_config(tmp, 1883)
    store = Store.open(cfg.store.path)
    pipeline = Pipeline(store, cfg.store.spool_dir, cfg.station.id, Bus(),
                        stages=[ChecksStage(load_rules(cfg.checks)), ReportOutboxStage(cfg)])
    identities = {}
    stored = 0
    for path in sorted(corpus.glob("**/*.dcm")):
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        identities[str(ds.get("SOPInstanceUID"))] = {
            k: str(ds.get(k) or "") for k in ("PatientName", "PatientBirthDate", "PatientID")}
        outcome = pipeline.ingest(path.read_bytes(), "import")
        stored += outcome.status == "stored"
    rows = outbox.next_pending(store.db, 0, 100_000)
    store.close()
    assert stored >= 40, stored
    return rows, identities


def test_every_queued_message_validates_against_its_schema(queued):
    rows, _ = queued
    kinds = {row.kind for row in rows}
    assert {"report", "alert"} <= kinds
    for row in rows:
        message = json.loads(envelope(kind=row.kind, event_id=row.event_id, seq=row.seq, site="st-test",
                                      station="ct-01", created=row.created_at, body_json=row.body))
        assert errors(message) == [], (row.kind, row.event_id, errors(message)[:3])


def _strings(node) -> list[str]:
    """Every string value (not key) in a JSON document."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node.lower()] if isinstance(node, str) else []


def test_no_patient_identity_leaves_in_any_message(queued):
    """Per report: none of its patient's name parts (as words), birth date or id in any value."""
    rows, identities = queued
    reports = [json.loads(row.body) for row in rows if row.kind == "report"]
    for body in reports:
        who = identities[body["sop_instance_uid"]]
        values = [v for v in _strings(body) if v != "[removed]"]  # our own redaction marker
        words = {w for v in values for w in re.split(r"[^\w]+", v)}
        for part in re.split(r"[^\w]+", who["PatientName"].lower()):
            assert len(part) < 3 or part not in words, (body["sop_instance_uid"], part)
        if len(who["PatientBirthDate"]) == 8:
            assert not any(who["PatientBirthDate"] in v for v in values if not v.startswith("1.")), body["study"]
        assert who["PatientID"].lower() not in values
    alerts = " ".join(row.body for row in rows if row.kind != "report").lower().replace("[removed]", "")  # our marker
    for who in identities.values():
        assert not who["PatientName"] or who["PatientName"].lower() not in alerts
    with_id = [r for r in reports if "pseudonym" in r.get("patient", {})]
    assert with_id and all(len(r["patient"]["pseudonym"]) == 64 for r in with_id)
