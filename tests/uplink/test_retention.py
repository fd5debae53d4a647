"""Bounded disk: delivered data is pruned after the retention period, unsent data never; the quota alarm."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.bus import Bus
from agent.config import Config
from agent.store import outbox
from agent.store.spool import spool_bytes
from agent.uplink import ReportOutboxStage, Uplink, retention, sender
from tests.uplink.conftest import make_config, wait_for
from tests.uplink.reports import ct_report, ingest

# the broker on 127.0.0.1:1883 with one client id: these run on one xdist worker, one after the other
pytestmark = pytest.mark.xdist_group("system-broker")


def _spooled_report(store, cfg: Config, n: int, size: int = 1000):
    """A stored report whose spooled file exists, queued for the central site; returns (seq, file)."""
    spool = cfg.store.spool_dir / "2025" / "03" / "01"
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"report-{n}.dcm"
    path.write_bytes(b"\0" * size)
    with store.transaction() as tx:
        item = ingest(tx, ct_report(n=n, study=f"1.2.3.{n}"))
        tx.execute("UPDATE receipts SET path = ?, size_bytes = ? WHERE id = ?", [str(path), size, item.saved.receipt_id])
        ReportOutboxStage(cfg)(tx, item)
    (seq,) = store.db.execute("SELECT MAX(seq) FROM outbox").fetchone()
    return seq, path


def test_prune_removes_delivered_rows_and_their_spool_files_after_retention_only(store, tmp_path):
    cfg = make_config(tmp_path, 1883, retention_days=30)
    old_seq, old_file = _spooled_report(store, cfg, 1)
    new_seq, new_file = _spooled_report(store, cfg, 2)
    pending_seq, pending_file = _spooled_report(store, cfg, 3)
    dead_seq, dead_file = _spooled_report(store, cfg, 4)
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(b"keep")
    outside_seq, _ = _spooled_report(store, cfg, 5)
    with store.transaction() as tx:
        tx.execute("UPDATE receipts SET path = ? WHERE id = (SELECT MAX(id) FROM receipts)", [str(outside)])
        long_ago = (datetime.now(timezone.utc) - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
        outbox.settle(tx, sent=[old_seq, new_seq, dead_seq, outside_seq], delivered=[old_seq, outside_seq], at=long_ago)
        outbox.settle(tx, delivered=[new_seq])
        outbox.settle(tx, dead=[(dead_seq, "0x87 Not authorized")])
    last_seq, _ = _spooled_report(store, cfg, 6)  # the newest row is never pruned; keep it out of the way
    before = spool_bytes(store.db)

    pruned = retention.prune(store, cfg.store.spool_dir, cfg.mqtt.retention_days)

    assert (pruned.rows, pruned.files) == (2, 1)
    assert not old_file.exists() and new_file.exists() and pending_file.exists() and dead_file.exists()
    assert outside.read_bytes() == b"keep"  # never anything outside the spool
    remaining = dict(store.db.execute("SELECT seq, state FROM outbox").fetchall())
    assert remaining == {new_seq: "delivered", pending_seq: "pending", dead_seq: "dead", last_seq: "pending"}
    assert spool_bytes(store.db) == before - 2000
    assert store.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 6  # the local record stays
    assert retention.prune(store, cfg.store.spool_dir, 30).rows == 0  # idempotent


def test_quota_alarm_follows_disk_usage_and_clears_after_pruning(store, tmp_path, monkeypatch):
    monkeypatch.setattr(sender, "HOUSEKEEPING_S", 0.1)
    cfg = make_config(tmp_path, 1, retention_days=0)  # no broker: housekeeping runs regardless
    cfg.store.quota_mb = 8.0
    seq, path = _spooled_report(store, cfg, 1, size=10 * 1024 * 1024)
    uplink = Uplink(cfg, store, Bus())
    uplink.start()
    try:
        alarm = wait_for(lambda: [a for a in uplink.health()["alarms"] if a["kind"] == "store_quota_reached"],
                         what="the quota alarm")[0]
        assert alarm["used_bytes"] > alarm["quota_bytes"] == 8 * 1024 * 1024
        assert json.loads(json.dumps(uplink.health()))
        with store.transaction() as tx:  # delivered: with retention_days = 0 it may go
            outbox.settle(tx, sent=[seq], delivered=[seq], at="2000-01-01T00:00:00Z")
        wait_for(lambda: not uplink.health()["alarms"], what="the alarm to clear")
        assert not path.exists()
    finally:
        uplink.stop()


def test_objects_kept_for_inspection_count_against_the_quota(tmp_path):
    """Non-dose objects are kept (rejected) with their files: they fill the quota like reports do."""
    from agent.pipeline import Pipeline
    from agent.store import Store
    from agent.store.spool import usage_bytes
    from simulator import rdsr

    cfg = make_config(tmp_path, 1)
    store = Store.open(cfg.store.path)
    try:
        def not_a_dose_report(i: int) -> bytes:
            ds = rdsr.ct_report([rdsr.CTSeries(protocol="Head")], accession=f"N{i}")
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
            ds.ConceptNameCodeSequence[0].CodeValue = "11528-7"  # a radiology report: rejected, kept in failed/
            ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
            ds.ConceptNameCodeSequence[0].CodeMeaning = "Radiology Report"
            ds.ContentSequence = []
            ds.add_new(0x00091010, "LO", "ALARA TEST")
            ds.add_new(0x00091011, "OB", b"\0" * 2_000_000)
            return rdsr.encode(ds)

        store.quota_bytes = store.size_bytes() + 7_000_000
        pipeline = Pipeline(store, cfg.store.spool_dir, cfg.station.id, Bus())
        outcomes = [pipeline.ingest(not_a_dose_report(i), "import").status for i in range(5)]
        assert outcomes == ["rejected", "rejected", "rejected", "refused", "refused"]
        with store.transaction() as tx:
            assert usage_bytes(store, tx) <= store.quota_bytes
    finally:
        store.close()


def test_pruning_frees_quota_so_the_pipeline_accepts_again(tmp_path):
    """Quota reached → refused; the reports are delivered and pruned → the next object is stored."""
    from agent.pipeline import Pipeline
    from agent.store import Store
    from simulator import rdsr

    cfg = make_config(tmp_path, 1, retention_days=0)
    store = Store.open(cfg.store.path)
    try:
        def encoded(i: int) -> bytes:
            ds = rdsr.ct_report([rdsr.CTSeries(protocol="Head")], accession=f"Q{i}")
            ds.add_new(0x00091010, "LO", "ALARA TEST")  # 2 MB of private data: the spool fills the quota
            ds.add_new(0x00091011, "OB", b"\0" * 2_000_000)
            return rdsr.encode(ds)

        store.quota_bytes = store.size_bytes() + 7_000_000
        pipeline = Pipeline(store, cfg.store.spool_dir, cfg.station.id, Bus(), stages=[ReportOutboxStage(cfg)])
        outcomes = [pipeline.ingest(encoded(i), "import").status for i in range(4)]
        assert outcomes == ["stored", "stored", "stored", "refused"]

        with store.transaction() as tx:
            seqs = [r[0] for r in tx.execute("SELECT seq FROM outbox ORDER BY seq").fetchall()]
            outbox.settle(tx, sent=seqs, delivered=seqs, at="2000-01-01T00:00:00Z")
        assert retention.prune(store, cfg.store.spool_dir, 0).files == 3
        assert pipeline.ingest(encoded(4), "import").status == "stored"
    finally:
        store.close()


def test_a_wall_clock_set_forward_does_not_prune_what_was_just_delivered(store, tmp_path, monkeypatch):
    """A box without RTC delivers under a clock years behind; NTP then sets it: the rows and spooled
    files delivered a minute ago are kept for retention_days, not deleted at the next housekeeping."""
    cfg = make_config(tmp_path, 1, retention_days=30)
    seq, path = _spooled_report(store, cfg, 1)
    last_seq, _ = _spooled_report(store, cfg, 2)  # the newest row is never pruned; keep it out of the way
    boot = datetime(2021, 1, 2, 17, 0, tzinfo=timezone.utc).timestamp()  # the clock at boot, 6 years behind
    clock = {"wall": boot, "mono": 1000.0}
    monkeypatch.setattr(time, "time", lambda: clock["wall"])
    monkeypatch.setattr(time, "monotonic", lambda: clock["mono"])
    uplink = Uplink(cfg, store, Bus())
    with store.transaction() as tx:
        outbox.settle(tx, sent=[seq], delivered=[seq], at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boot + 20)))

    clock["mono"] += 60  # a minute later NTP sets the wall clock to the real time
    clock["wall"] = datetime.now(timezone.utc).timestamp()
    uplink._housekeeping()  # prunes with the (now right) clock

    assert path.exists()
    (delivered_at,) = store.db.execute("SELECT delivered_at FROM outbox WHERE seq = ?", [seq]).fetchone()
    assert abs(datetime.fromisoformat(delivered_at.replace("Z", "+00:00")).timestamp() - (clock["wall"] - 40)) < 5
    # still pruned once retention_days have really passed
    later = datetime.now(timezone.utc) + timedelta(days=31)
    assert retention.prune(store, cfg.store.spool_dir, 30, now=later).files == 1
    assert not path.exists()
