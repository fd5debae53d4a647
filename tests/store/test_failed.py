"""Rejected objects (no dose in them) leave failed/ after their retention; unreadable ones stay."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.bus import Bus
from agent.pipeline import Pipeline
from agent.store.failed import PRUNE_BATCH, prune_rejected
from agent.store.reports import count_failed, failed_receipts
from agent.store.spool import spool_bytes
from simulator import rdsr
from tests.test_pipeline import ct_slice


def _age(store, days: float) -> None:
    """Every receipt so far arrived ``days`` ago."""
    when = (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    with store.transaction() as tx:
        tx.execute("UPDATE receipts SET received_at = ?", [when])


def _unreadable() -> bytes:
    broken = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="40.5")])
    del broken.ContentSequence
    return rdsr.encode(broken)


def test_rejected_images_go_after_their_retention_and_unreadable_reports_stay(store, tmp_path):
    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    old = [p.ingest(ct_slice(n), "dicom") for n in range(3)]
    error = p.ingest(_unreadable(), "dicom")
    assert [o.status for o in old] == ["rejected"] * 3 and error.status == "error"
    _age(store, 31)
    new = p.ingest(ct_slice(99), "dicom")  # a slice of today's study
    before = spool_bytes(store.db)
    assert count_failed(store.db) == 5

    pruned = prune_rejected(store, tmp_path / "failed", tmp_path / "spool", retention_days=30)

    assert pruned.files == 3 and not any(Path(o.path).exists() for o in old)
    assert Path(new.path).exists() and Path(error.path).exists()
    assert spool_bytes(store.db) == before - pruned.bytes  # the quota has that room again
    assert count_failed(store.db) == 2
    assert {f["status"] for f in failed_receipts(store.db)} == {"rejected", "error"}
    assert prune_rejected(store, tmp_path / "failed", tmp_path / "spool", retention_days=30).files == 0
    again = p.ingest(ct_slice(0), "dicom")  # the router forwards the old study once more: kept anew
    assert again.status == "rejected" and Path(again.path).exists()


def test_a_retention_of_zero_keeps_them_and_nothing_outside_the_agents_folders_is_deleted(store, tmp_path):
    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    kept = p.ingest(ct_slice(1), "dicom")
    elsewhere = tmp_path / "elsewhere.dcm"
    elsewhere.write_bytes(b"not the agent's")
    with store.transaction() as tx:  # a receipt whose path points outside failed/ and the spool
        tx.execute("INSERT INTO receipts (received_at, origin, path, sha256, size_bytes, status) "
                   "VALUES ('2020-01-01T00:00:00.000000Z', 'import', ?, 'x', 15, 'rejected')", [str(elsewhere)])
    _age(store, 400)
    assert prune_rejected(store, tmp_path / "failed", tmp_path / "spool", retention_days=0).files == 0
    assert Path(kept.path).exists()
    assert prune_rejected(store, tmp_path / "failed", tmp_path / "spool", retention_days=30).files == 1
    assert not Path(kept.path).exists() and elsewhere.exists()
    assert count_failed(store.db) == 1  # the one left is still counted and listed


def test_more_than_a_batch_is_pruned_in_one_call(store, tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    with store.transaction() as tx:
        for n in range(PRUNE_BATCH + 7):
            path = failed / f"{n}.dcm"
            path.write_bytes(b"x" * 10)
            tx.execute("INSERT INTO receipts (received_at, origin, path, sha256, size_bytes, status) "
                       "VALUES ('2020-01-01T00:00:00.000000Z', 'dicom', ?, ?, 10, 'rejected')", [str(path), str(n)])
    pruned = prune_rejected(store, failed, tmp_path / "spool", retention_days=30)
    assert pruned.files == PRUNE_BATCH + 7 and list(failed.iterdir()) == []


def test_a_backlog_is_pruned_a_few_thousand_at_a_time(store, tmp_path, monkeypatch):
    """After an upgrade, months of forwarded images are past their retention at once: each call deletes
    about ``max_files`` and says more are left, so that the agent's watchdog pings go on in between."""
    failed = tmp_path / "failed"
    failed.mkdir()
    with store.transaction() as tx:
        for n in range(25):
            path = failed / f"{n}.dcm"
            path.write_bytes(b"x")
            tx.execute("INSERT INTO receipts (received_at, origin, path, sha256, size_bytes, status) "
                       "VALUES ('2020-01-01T00:00:00.000000Z', 'dicom', ?, ?, 1, 'rejected')", [str(path), str(n)])
    import agent.store.failed as failed_mod

    monkeypatch.setattr(failed_mod, "PRUNE_BATCH", 5)
    calls = []
    while True:
        pruned = failed_mod.prune_rejected(store, failed, tmp_path / "spool", 30, max_files=10)
        calls.append(pruned.files)
        if not pruned.more:
            break
    assert sum(calls) == 25 and len(calls) >= 2 and list(failed.iterdir()) == []




def test_files_that_cannot_be_deleted_do_not_hold_up_the_ones_behind_them(tmp_path):
    """A spool moved to another disk leaves the receipts of the old failed/ pointing elsewhere: they are
    left at every call.  More of them than one call takes held the agent's housekeeping on those same
    receipts every 5 s for ever, and the forwarded images received after them were never deleted."""
    from agent import daemon
    from agent.config import Config

    cfg = Config.model_validate({"store": {"path": str(tmp_path / "a.sqlite"), "spool_dir": str(tmp_path / "spool")},
                                 "mqtt": {"enabled": False}, "console": {"enabled": False}})
    agent = daemon.Agent(cfg, with_sources=False)
    failed = tmp_path / "failed"
    failed.mkdir()
    stuck = 10 * PRUNE_BATCH + 100  # more than a call takes
    with agent.store.transaction() as tx:
        for n in range(stuck + 10):
            path = tmp_path / "old-disk" / f"{n}.dcm" if n < stuck else failed / f"{n}.dcm"
            if n >= stuck:
                path.write_bytes(b"x")
            tx.execute("INSERT INTO receipts (received_at, origin, path, sha256, size_bytes, status) "
                       "VALUES ('2020-01-01T00:00:00.000000Z', 'dicom', ?, ?, 1, 'rejected')", [str(path), str(n)])
    try:
        calls = 1
        while agent.housekeeping() and calls < 10:  # as the main loop calls it: again soon while more are left
            calls += 1
        assert calls < 10 and list(failed.iterdir()) == []
        assert count_failed(agent.store.db) == stuck  # those left are still listed
    finally:
        agent.store.close()


def test_a_stored_sop_instance_with_other_doses_is_kept_whole_counted_in_the_quota_and_never_pruned(store, tmp_path):
    """It may be the only copy of corrected doses: not pruned as a non-dose image would be, nor cut to its header."""
    from tests.conftest import CORPUS

    p = Pipeline(store, tmp_path / "spool", "RF1", Bus())
    assert p.ingest((CORPUS / "RF-RDSR-Siemens-Zee.dcm").read_bytes(), "dicom").status == "stored"
    before = spool_bytes(store.db)
    adjusted = (CORPUS / "RF-RDSR-Siemens-Zee_adjusted.dcm").read_bytes()
    kept = p.ingest(adjusted, "dicom")
    assert kept.status == "duplicate_differs" and Path(kept.path).read_bytes() == adjusted
    assert spool_bytes(store.db) == before + len(adjusted)
    _age(store, 400)
    assert prune_rejected(store, tmp_path / "failed", tmp_path / "spool", retention_days=30).files == 0
    assert Path(kept.path).exists() and count_failed(store.db) == 1
    assert [f["status"] for f in failed_receipts(store.db)] == ["duplicate_differs"]
