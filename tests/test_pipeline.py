"""The pipeline's inbox and worker: accepted objects are processed in order, once, whatever stops the agent."""
import sqlite3
import time
from pathlib import Path

import pytest

from agent.bus import Bus
from agent.pipeline import MAX_WAITING, Pipeline
from agent.store.inbox import Inbox, path_for
from simulator import rdsr
from tests.conftest import wait_for


def encoded(n: int) -> bytes:
    return rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + n}.5")]))


def rows(store, sql):
    return store.db.execute(sql).fetchall()


@pytest.fixture
def pipeline(store, tmp_path):
    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    yield p
    p.stop()


def test_accepted_objects_are_processed_in_order_and_leave_the_inbox(pipeline, store):
    pipeline.start()
    accepted = [pipeline.receive(encoded(n), "dicom", calling_ae="CT1") for n in range(5)]
    assert [o.status for o in accepted] == ["accepted"] * 5
    assert pipeline.wait_processed(accepted[-1].item_id, timeout=30)
    ctdivols = [r[0] for r in rows(store, "SELECT json_extract(record, '$.events[0].ctdivol_mGy') FROM reports ORDER BY rowid")]
    assert ctdivols == [40.5, 41.5, 42.5, 43.5, 44.5]
    assert rows(store, "SELECT DISTINCT calling_ae FROM receipts") == [("CT1",)]
    wait_for(lambda: pipeline.inbox.pending() == [], timeout=10, what="the processed rows to leave the inbox")


def test_an_object_the_inbox_has_no_memory_for_is_refused_and_the_next_is_taken(pipeline, monkeypatch):
    """A 400 MB image on a box short of memory: SQLite's out-of-memory (a MemoryError) escaped the C-STORE
    handler and pynetdicom answered with a status of its own; now it is 0xA700's "refused", as for a full disk."""
    pipeline.start()
    put = pipeline.inbox.put

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pipeline.inbox, "put", no_memory)
    outcome = pipeline.receive(encoded(1), "dicom")
    assert outcome.status == "refused" and "out of memory" in outcome.reason
    monkeypatch.setattr(pipeline.inbox, "put", put)
    assert pipeline.receive(encoded(2), "dicom").status == "accepted"


def test_what_an_earlier_run_left_in_the_inbox_is_processed_at_start(store, tmp_path):
    left = Inbox(path_for(store.path))  # an earlier run answered Success for these, then died
    for n in range(3):
        left.put(encoded(n), time.time(), "dicom", "CT1")
    left.close()
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    pipeline.start()
    pipeline.stop()  # stop() first finishes what is queued
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(3,)]
    assert Inbox(path_for(store.path)).pending() == []


def test_a_row_whose_report_committed_before_a_crash_is_not_processed_twice(store, tmp_path):
    data, received = encoded(1), time.time()
    inbox = Inbox(path_for(store.path))
    inbox.put(data, received, "dicom")  # put directly, to know the row's content
    inbox.close()
    first = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    first.start()
    first.stop()
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]
    (path,) = rows(store, "SELECT path FROM receipts")[0]
    inbox = Inbox(path_for(store.path))  # the crash came between the commit and the row's removal
    inbox.put(data, received, "dicom")
    inbox.close()

    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]  # no second receipt, not even a duplicate
    assert Path(path).exists()
    assert Inbox(path_for(store.path)).pending() == []


def test_a_backlogs_rows_leave_the_inbox_together_and_a_crash_before_that_stores_nothing_twice(store, tmp_path,
                                                                                                 monkeypatch):
    inbox = Inbox(path_for(store.path))  # a backlog: five accepted objects (put directly: receive() would wait)
    for n in range(5):
        inbox.put(encoded(n), time.time(), "dicom")
    inbox.close()
    removals = []
    monkeypatch.setattr(Inbox, "remove", lambda self, ids: removals.append(list(ids)))  # and then the agent died
    first = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    first.start()
    first.stop()
    assert [len(ids) for ids in removals] == [5]  # one write of the inbox for the backlog, once the worker is idle
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(5,)]
    monkeypatch.undo()

    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())  # all five rows are still there
    again.start()
    again.stop()
    assert rows(store, "SELECT status, COUNT(*) FROM receipts GROUP BY status") == [("stored", 5)]
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(5,)]
    assert Inbox(path_for(store.path)).pending() == []


@pytest.mark.parametrize("lost", ["bytes", "file"])
def test_a_spool_file_lost_to_a_power_cut_before_its_batch_was_flushed_is_written_again_at_start(
        store, tmp_path, monkeypatch, capsys, lost):
    data = _processed_then_died(store, tmp_path, monkeypatch)  # the power went before the batch's flush
    (path,) = rows(store, "SELECT path FROM receipts")[0]
    if lost == "bytes":
        Path(path).write_bytes(b"")  # its name reached the disk, its bytes did not
    else:
        Path(path).unlink()

    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    assert Path(path).read_bytes() == data
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]
    assert Inbox(path_for(store.path)).pending() == []
    assert "spool_file_restored" in capsys.readouterr().out





def test_a_spool_file_pruned_before_a_crash_is_not_written_again_at_start(store, tmp_path, monkeypatch):
    """Retention deleted the file of a delivered report (retention_days 0) while its inbox row still waited
    for its batch's removal, and the agent died: the next start wrote the file again, and kept it for good
    (no longer counted in the quota, never pruned again)."""
    from agent.store.spool import record_pruned

    _processed_then_died(store, tmp_path, monkeypatch)
    (receipt_id, path, size), = rows(store, "SELECT id, path, size_bytes FROM receipts")
    Path(path).unlink()  # as retention.prune does
    with store.transaction() as tx:
        record_pruned(tx, receipt_id, size)

    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    assert not Path(path).exists()
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]
    assert Inbox(path_for(store.path)).pending() == []


def test_a_spool_file_left_unflushed_by_a_killed_run_is_flushed_before_its_row_goes(store, tmp_path, monkeypatch):
    """The agent was killed (not the power) before its batch's flush: the file's bytes are right, read from
    the system's cache, but not on the disk yet.  The next start removed the row without flushing the file,
    and a power cut soon after could still take it."""
    _processed_then_died(store, tmp_path, monkeypatch, flushed=False)  # killed before the flush
    (path,) = rows(store, "SELECT path FROM receipts")[0]

    events = _flushes_and_removals(monkeypatch)
    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    monkeypatch.undo()
    assert "removed" in events
    _flushed_before_removal(events, path)
    assert Inbox(path_for(store.path)).pending() == []


def test_a_spool_file_that_cannot_be_written_again_at_start_keeps_its_inbox_row(store, tmp_path, monkeypatch):
    """After a power cut took a spool file, the start that finds the object processed could not write the
    file again (a full disk): the inbox row, the object's last copy, was removed all the same."""
    import errno

    from agent import pipeline as pipeline_module

    data = _processed_then_died(store, tmp_path, monkeypatch)  # the power went before the batch's flush
    (path,) = rows(store, "SELECT path FROM receipts")[0]
    Path(path).unlink()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline_module, "_write_durably", disk_full)
    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    wait_for(lambda: again.pending() == 0 or not again.can_accept(), timeout=10, what="the row to be taken")
    again.stop(grace_s=0.1)
    monkeypatch.undo()
    assert len(Inbox(path_for(store.path)).pending()) == 1  # kept for the next try

    last = Pipeline(store, tmp_path / "spool", "CT1", Bus())  # the disk has room again
    last.start()
    last.stop()
    assert Path(path).read_bytes() == data
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]
    assert Inbox(path_for(store.path)).pending() == []



def test_a_rejected_object_that_cannot_be_moved_to_failed_is_flushed_in_the_spool_before_its_row_goes(
        store, tmp_path, monkeypatch):
    """failed/ cannot be made (or is on another file system): the object stays in the spool, where the worker
    wrote it unflushed, and its receipt says so.  Its row was removed without the file being flushed."""
    from tests.conftest import CORPUS

    (tmp_path / "failed").write_bytes(b"")  # in the way of the folder
    events = _flushes_and_removals(monkeypatch)
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    pipeline.start()
    outcome = pipeline.receive((CORPUS / "ESR_non-dose.dcm").read_bytes(), "dicom")
    assert pipeline.wait_processed(outcome.item_id, timeout=30)
    pipeline.stop()
    monkeypatch.undo()
    (status, path), = rows(store, "SELECT status, path FROM receipts")
    assert status == "rejected" and Path(path).is_relative_to(tmp_path / "spool") and Path(path).exists()
    _flushed_before_removal(events, path)
    assert Inbox(path_for(store.path)).pending() == []



def test_a_rejected_object_left_in_the_spool_and_lost_to_a_power_cut_is_written_again_at_start(
        store, tmp_path, monkeypatch):
    from tests.conftest import CORPUS

    (tmp_path / "failed").write_bytes(b"")  # failed/ cannot be made: the object stays in the spool
    data = _processed_then_died(store, tmp_path, monkeypatch, (CORPUS / "ESR_non-dose.dcm").read_bytes(),
                                flushed=False)  # the power went before the flush
    (path,) = rows(store, "SELECT path FROM receipts WHERE status = 'rejected'")[0]
    Path(path).unlink()

    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    assert Path(path).read_bytes() == data
    assert rows(store, "SELECT status FROM receipts") == [("rejected",)]
    assert Inbox(path_for(store.path)).pending() == []


def _processed_then_died(store, tmp_path, monkeypatch, data: bytes | None = None, flushed: bool = True) -> bytes:
    """An object put into the inbox and processed by a run that died before its batch's removal (and, with
    ``flushed`` False, before its flush): its report committed, its inbox row still there.  Returns its bytes."""
    from agent import pipeline as pipeline_module

    data = encoded(1) if data is None else data
    inbox = Inbox(path_for(store.path))
    inbox.put(data, time.time(), "dicom")
    inbox.close()
    if not flushed:
        monkeypatch.setattr(pipeline_module, "_flush", lambda paths, dirs=True: None)
    monkeypatch.setattr(Inbox, "remove", lambda self, ids: None)
    first = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    first.start()
    first.stop()
    monkeypatch.undo()
    return data


def _flushes_and_removals(monkeypatch) -> list[str]:
    """What is fsync'd (the file's path) and when the inbox removes rows ("removed"), in order."""
    import os

    events: list[str] = []
    fsync, remove = os.fsync, Inbox.remove

    def noted_fsync(fd):
        events.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    def noted_remove(self, ids):
        events.append("removed")
        remove(self, ids)

    monkeypatch.setattr(os, "fsync", noted_fsync)
    monkeypatch.setattr(Inbox, "remove", noted_remove)
    return events


def _flushed_before_removal(events: list[str], path: str) -> None:
    flushed = events[:events.index("removed")]
    assert str(Path(path).resolve()) in flushed and str(Path(path).parent.resolve()) in flushed


def test_an_object_the_store_cannot_take_stays_in_the_inbox_and_is_retried(store, tmp_path, capsys):
    failures = []

    def flaky(tx, ingest):  # the first attempt fails inside the transaction, as a full disk would
        if not failures:
            failures.append(1)
            raise sqlite3.OperationalError("database or disk is full")

    bus, alarms = Bus(), []
    bus.subscribe(lambda topic, alarm: alarms.append(alarm), {"alarm"})
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", bus, stages=[flaky])
    pipeline.start()
    outcome = pipeline.receive(encoded(1), "dicom")
    assert outcome.status == "accepted"
    assert pipeline.wait_processed(outcome.item_id, timeout=30)  # retried after a second
    assert failures == [1]
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(1,)]
    pipeline.stop()
    # the modality was told Success: the stall is an alarm (status message, console) until it is over
    assert [(a["kind"], a.get("cleared", False)) for a in alarms] == [("processing_stalled", False),
                                                                     ("processing_stalled", True)]
    assert "database or disk is full" in alarms[0]["reason"]
    logged = capsys.readouterr().out  # hospital IT reads the journal: the stall and its end are both there
    assert "processing_stalled" in logged and "processing_resumed" in logged


def test_stop_leaves_unprocessed_rows_for_the_next_start(store, tmp_path):
    inbox = Inbox(path_for(store.path))  # five accepted objects (put directly: receive() would wait)
    for n in range(5):
        inbox.put(encoded(n), time.time(), "dicom")
    inbox.close()
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus(), stages=[lambda tx, ingest: time.sleep(0.3)])
    pipeline.start()
    pipeline.stop(grace_s=0.1)  # the object in hand is finished, the others wait in the inbox
    stored = rows(store, "SELECT COUNT(*) FROM reports")[0][0]
    assert 1 <= stored < 5
    assert len(Inbox(path_for(store.path)).pending()) == 5 - stored

    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    pipeline.start()
    pipeline.stop()
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(5,)]


def test_receive_needs_a_started_worker(pipeline):
    with pytest.raises(RuntimeError):
        pipeline.receive(encoded(1), "dicom")



def test_a_sender_faster_than_processing_is_held_back_so_alerts_do_not_lag(store, tmp_path):
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus(), stages=[lambda tx, ingest: time.sleep(0.1)])
    pipeline.start()
    for n in range(5):
        assert pipeline.receive(encoded(n), "dicom").status == "accepted"
        assert pipeline.pending() <= 1 + MAX_WAITING  # the object in hand, and no more waiting than allowed
    pipeline.stop()
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(5,)]


def test_a_store_that_keeps_failing_does_not_hold_senders(store, tmp_path):
    def broken(tx, ingest):
        raise sqlite3.OperationalError("disk I/O error")

    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus(), stages=[broken])
    pipeline.start()
    t = time.monotonic()
    assert [pipeline.receive(encoded(n), "dicom").status for n in range(4)] == ["accepted"] * 4
    assert time.monotonic() - t < 5  # answered (each one durable), not held for the back-pressure limit
    pipeline.stop()
    assert rows(store, "SELECT COUNT(*) FROM reports") == [(0,)]
    assert len(Inbox(path_for(store.path)).pending()) == 4  # all kept for the next start



def test_the_objects_processed_before_one_the_store_refuses_leave_the_inbox_while_it_waits(store, tmp_path):
    """A backlog's rows are removed together once the worker is about to wait; waiting to try a refused
    object again (a full disk: minutes or hours) kept those before it in the inbox, shown as waiting."""
    from agent.store.inbox import count_pending

    def disk_full(tx, ingest):
        if ingest.report.events[0].ctdivol_mGy == 42.5:
            raise sqlite3.OperationalError("database or disk is full")

    inbox = Inbox(path_for(store.path))
    for n in range(3):
        inbox.put(encoded(n), time.time(), "dicom")
    inbox.close()
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus(), stages=[disk_full])
    pipeline.start()
    try:
        wait_for(lambda: not pipeline.can_accept(), timeout=10, what="the third object to be refused")
        assert rows(store, "SELECT COUNT(*) FROM reports") == [(2,)]
        assert count_pending(store.path) == (1, 0)  # the refused one only
    finally:
        pipeline.stop(grace_s=0.1)


def test_an_object_whose_processing_fails_is_kept_as_an_error_and_the_others_go_on(store, tmp_path):
    def fragile(tx, ingest):  # a fault that this one report triggers (not the disk)
        if ingest.report.events[0].ctdivol_mGy == 41.5:
            raise ValueError("unexpected value")

    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus(), stages=[fragile])
    pipeline.start()
    outcomes = [pipeline.receive(encoded(n), "dicom") for n in range(3)]
    assert pipeline.wait_processed(outcomes[-1].item_id, timeout=30)
    pipeline.stop()
    assert rows(store, "SELECT status FROM receipts ORDER BY id") == [("stored",), ("error",), ("stored",)]
    (reason, path) = rows(store, "SELECT reason, path FROM receipts WHERE status = 'error'")[0]
    assert "ValueError: unexpected value" in reason and "/failed/" in path and Path(path).exists()
    assert Inbox(path_for(store.path)).pending() == []


def test_a_worker_stuck_on_one_object_makes_the_agent_unhealthy(store, tmp_path, monkeypatch):
    """A disk that stops answering (an fsync that never returns) held the worker while the agent kept
    pinging the systemd watchdog: now the watchdog pings stop, /healthz fails, and stop() returns."""
    import threading

    from agent import daemon, pipeline as pipeline_module
    from agent.config import Config

    release = threading.Event()
    monkeypatch.setattr(pipeline_module, "WORKER_STALL_S", 0.5)
    monkeypatch.setattr(pipeline_module, "FINISH_S", 0.5)
    cfg = Config.model_validate({"store": {"path": str(tmp_path / "a.sqlite"), "spool_dir": str(tmp_path / "spool")},
                                 "mqtt": {"enabled": False}, "console": {"enabled": False}})
    agent = daemon.Agent(cfg, with_sources=False)
    agent.pipeline.stages.append(lambda tx, ingest: release.wait(30))
    agent.start()
    try:
        assert agent.problems() == []
        threading.Thread(target=agent.pipeline.receive, args=(encoded(1), "dicom"), daemon=True).start()
        time.sleep(1.0)
        (problem,) = agent.problems()
        assert "stuck on one object" in problem and not agent.healthy()
        t = time.monotonic()
        agent.pipeline.stop(grace_s=0.5)
        assert time.monotonic() - t < 5  # does not wait for the stuck worker forever
    finally:
        release.set()
        time.sleep(0.5)  # the worker finishes its object before the store closes
        agent.store.close()



def test_a_worker_hung_flushing_the_spool_makes_the_agent_unhealthy(store, tmp_path, monkeypatch):
    """The spool files are flushed after their objects were processed, right before their rows go: an
    fsync there that never returns was not counted as a stuck worker, and the watchdog kept being pinged."""
    import threading

    from agent import pipeline as pipeline_module

    release = threading.Event()
    flush = pipeline_module._flush

    def hung_disk(paths, dirs=True):
        release.wait(30)
        flush(paths, dirs)

    monkeypatch.setattr(pipeline_module, "WORKER_STALL_S", 0.5)
    monkeypatch.setattr(pipeline_module, "_flush", hung_disk)
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    pipeline.start()
    try:
        outcome = pipeline.receive(encoded(1), "dicom")
        assert pipeline.wait_processed(outcome.item_id, timeout=30)  # committed; its flush hangs
        wait_for(pipeline.stuck, timeout=5, what="the worker hung in its flush to count as stuck")
    finally:
        release.set()
        pipeline.stop()
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]
    assert Inbox(path_for(store.path)).pending() == []


CRASHING_RUN = """
import os, signal, sys
from pathlib import Path
from agent.bus import Bus
from agent.pipeline import Pipeline
from agent.store import Store

def crash(tx, ingest):  # a fault that ends the process (a crash in a library, memory exhausted, the watchdog)
    if ingest.report.events[0].ctdivol_mGy == 41.5:
        os.kill(os.getpid(), signal.SIGKILL)

store = Store.open(Path(sys.argv[1]))
pipeline = Pipeline(store, Path(sys.argv[2]), "CT1", Bus(), stages=[crash])
pipeline.start()
pipeline.stop()
store.close()
"""


def test_an_object_that_kills_the_agent_each_time_is_set_aside_after_three_runs(store, tmp_path):
    import subprocess
    import sys

    data = [encoded(n) for n in range(3)]  # the second one kills the process that processes it
    inbox = Inbox(path_for(store.path))
    for d in data:
        inbox.put(d, time.time(), "dicom", "CT1")
    inbox.close()
    store.close()
    repo = Path(__file__).resolve().parents[1]

    def run() -> int:
        return subprocess.run([sys.executable, "-c", CRASHING_RUN, str(store.path), str(tmp_path / "spool")],
                              cwd=repo, timeout=120).returncode

    assert [run() for _ in range(3)] == [-9, -9, -9]  # each start takes the same object first, and dies
    assert run() == 0  # the fourth sets it aside and goes on
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT COUNT(*) FROM reports").fetchone() == (2,)  # the first and the third, once each
    (status, reason, path, origin, ae), = db.execute(
        "SELECT status, reason, path, origin, calling_ae FROM receipts WHERE status != 'stored'").fetchall()
    assert (status, origin, ae) == ("error", "dicom", "CT1")
    assert "did not finish in 3 attempts" in reason
    assert Path(path).read_bytes() == data[1]  # kept, byte for byte, for inspection
    assert Inbox(path_for(store.path)).pending() == []


def test_an_object_the_store_refused_through_several_restarts_is_not_set_aside(store, tmp_path):
    """A full disk refuses the report at every try, and the agent is restarted three times meanwhile:
    the object is not to blame, and is stored once the disk has room again."""
    def disk_full(tx, ingest):
        raise sqlite3.OperationalError("database or disk is full")

    inbox = Inbox(path_for(store.path))
    inbox.put(encoded(1), time.time(), "dicom")
    inbox.close()
    for _ in range(4):
        pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus(), stages=[disk_full])
        pipeline.start()
        time.sleep(0.3)  # tried, refused, waiting to try again
        pipeline.stop(grace_s=0.1)
    assert rows(store, "SELECT COUNT(*) FROM receipts") == [(0,)]
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    pipeline.start()
    pipeline.stop()
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]


DYING_ON_THE_DISK = """
import os, signal, sys
from pathlib import Path
from agent import pipeline as pipeline_module
from agent.bus import Bus
from agent.pipeline import Pipeline
from agent.store import Store

write = pipeline_module._write_durably
def hung_disk(path, data, *args):  # the spool's disk stops answering while this object is written; the watchdog
    if b"41.5" in data:             # kills us
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, data, *args)
pipeline_module._write_durably = hung_disk

store = Store.open(Path(sys.argv[1]))
pipeline = Pipeline(store, Path(sys.argv[2]), "CT1", Bus())
pipeline.start()
pipeline.stop()
store.close()
"""


def test_deaths_while_the_disk_writes_an_object_do_not_count_against_it(store, tmp_path):
    """A disk that hangs (the watchdog ends the agent) is not the object's fault: after any number of
    such deaths the object is stored once the disk answers again, not set aside."""
    import subprocess
    import sys

    inbox = Inbox(path_for(store.path))
    inbox.put(encoded(1), time.time(), "dicom")
    inbox.close()
    store.close()
    repo = Path(__file__).resolve().parents[1]
    for _ in range(4):
        run = subprocess.run([sys.executable, "-c", DYING_ON_THE_DISK, str(store.path), str(tmp_path / "spool")],
                             cwd=repo, timeout=120)
        assert run.returncode == -9
    again = Pipeline(type(store).open(store.path), tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    assert rows(again.store, "SELECT status FROM receipts") == [("stored",)]
    again.store.close()


def test_an_object_stored_just_before_the_last_death_is_not_set_aside(store, tmp_path):
    """Its count reached the limit, but its report had committed before the run died: it is
    recognised as stored, as any row whose removal was lost is."""
    data, received = encoded(1), time.time()
    first = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    inbox = Inbox(path_for(store.path))
    inbox.put(data, received, "dicom")
    inbox.close()
    first.start()
    first.stop()
    inbox = Inbox(path_for(store.path))  # the row again, with three deaths counted
    item = inbox.put(data, received, "dicom")
    for _ in range(3):
        inbox.taken(item.id)
    inbox.close()
    again = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    again.start()
    again.stop()
    assert rows(store, "SELECT status FROM receipts") == [("stored",)]
    assert Inbox(path_for(store.path)).pending() == []


def test_can_accept_says_no_when_the_disk_is_nearly_full(store, tmp_path, monkeypatch):
    """C-ECHO's answer: with less than MIN_FREE_BYTES free on the spool's or store's disk, an
    object sent now could not be kept."""
    import os

    import agent.pipeline as pipeline_mod

    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    assert p.can_accept()
    st = os.statvfs(tmp_path)
    monkeypatch.setattr(pipeline_mod, "MIN_FREE_BYTES", st.f_bavail * st.f_frsize + (1 << 30))  # more than is free
    assert not p.can_accept()


def test_a_rejected_object_sent_again_is_kept_once(store, tmp_path):
    """A scanner that routes every image to the agent sends the same non-dose objects again and again:
    one copy in failed/ and one receipt, not one per send; a different object is kept on its own."""
    from tests.conftest import CORPUS

    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    data = (CORPUS / "ESR_non-dose.dcm").read_bytes()
    outcomes = [p.ingest(data, "dicom") for _ in range(3)]
    assert [o.status for o in outcomes] == ["rejected"] * 3
    assert len({o.path for o in outcomes}) == 1
    assert len(list((tmp_path / "failed").iterdir())) == 1
    assert store.db.execute("SELECT COUNT(*) FROM receipts WHERE status = 'rejected'").fetchone()[0] == 1
    assert list((tmp_path / "spool").rglob("*.dcm")) == []  # the re-sent copies were not left in the spool
    other = p.ingest((CORPUS / "NM-PetIm-GE.dcm").read_bytes(), "dicom")
    assert other.status == "rejected" and len(list((tmp_path / "failed").iterdir())) == 2


def test_an_object_sent_again_and_again_is_logged_once_a_minute_with_a_count_not_once_per_retry(store, tmp_path,
                                                                                                 monkeypatch):
    from structlog.testing import capture_logs

    import agent.logs

    broken = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="40.5")])
    del broken.ContentSequence
    broken, good = rdsr.encode(broken), encoded(1)
    pipeline = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    with capture_logs() as logs:
        for _ in range(30):  # a modality retrying every 2 s for a minute
            assert pipeline.ingest(broken, "dicom", calling_ae="CT1").status == "error"
            assert pipeline.ingest(good, "dicom", calling_ae="CT1").status in ("stored", "duplicate")
    events = [e["event"] for e in logs]
    assert events.count("report_error") == 1 and events.count("report_error_again") == 1
    assert events.count("report_stored") == 1 and events.count("report_duplicate") == 1
    monkeypatch.setattr(agent.logs, "REPEAT_LOG_S", 0.0)  # a minute later: one line each, counting those since
    with capture_logs() as logs:
        pipeline.ingest(broken, "dicom", calling_ae="CT1")
        pipeline.ingest(good, "dicom", calling_ae="CT1")
    assert [(e["event"], e["times"]) for e in logs] == [("report_error_again", 29), ("report_duplicate", 29)]


def ct_slice(n: int) -> bytes:
    """A CT image of 512 × 512 16-bit pixels (512 KiB), as a router forwarding a whole study sends it."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", "1.2.3.4", "1.2.3.4.5", n
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel, ds.PhotometricInterpretation = 15, 1, 1, "MONOCHROME2"
    ds.PixelData = bytes([n % 256]) * (512 * 512 * 2)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_rejected_images_are_kept_without_their_pixel_data(store, tmp_path):
    """A router that forwards every image of a CT study to the agent: each slice (512 KiB) was kept whole
    in failed/, for ever; a thousand-slice examination took 0.5 GB. Their headers are kept, and count."""
    import pydicom

    from agent.store.spool import spool_bytes

    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    outcomes = [p.ingest(ct_slice(n), "dicom") for n in range(3)]
    assert [o.status for o in outcomes] == ["rejected"] * 3
    assert "kept without its pixel data (524,300 bytes left out)" in outcomes[0].reason
    for o in outcomes:
        kept = pydicom.dcmread(o.path)
        assert kept.Modality == "CT" and "PixelData" not in kept and Path(o.path).stat().st_size < 2048
    assert spool_bytes(store.db) == sum(Path(o.path).stat().st_size for o in outcomes)
    reasons = [r for (r,) in rows(store, "SELECT reason FROM receipts WHERE status = 'rejected'")]
    assert len(reasons) == 3 and all("pixel data" in r for r in reasons)
    # a rejected object without pixel data (a non-dose SR) is kept as it came
    from tests.conftest import CORPUS

    sr = p.ingest((CORPUS / "ESR_non-dose.dcm").read_bytes(), "dicom")
    assert Path(sr.path).read_bytes() == (CORPUS / "ESR_non-dose.dcm").read_bytes()


def test_a_header_copy_that_cannot_be_written_leaves_no_partial_file_in_failed(store, tmp_path, monkeypatch):
    """The disk fails while the header of a rejected image is written (full, an I/O error): the image stays
    whole in the spool, where its receipt points, and was counted so; but the half-written copy was left in
    failed/ as a ``.part`` file that nothing lists, counts against the quota or ever removes."""
    import errno
    import os

    real = os.replace

    def failing(src, dst):
        if Path(dst).parent.name == "failed":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    p = Pipeline(store, tmp_path / "spool", "CT1", Bus())
    monkeypatch.setattr(os, "replace", failing)
    outcome = p.ingest(ct_slice(1), "dicom")
    assert outcome.status == "rejected" and Path(outcome.path).parent.parent.parent.parent.name == "spool"
    assert Path(outcome.path).stat().st_size > 512 * 512 * 2  # kept whole where the receipt says
    assert list((tmp_path / "failed").iterdir()) == []
