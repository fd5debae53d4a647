"""The inbox: a received object is one durable row until its processing has committed."""
import sqlite3

from agent.store.inbox import Inbox, count_pending, path_for
from tests.conftest import damage_inbox


def test_rows_survive_a_reopen_in_order_and_go_when_removed(tmp_path):
    inbox = Inbox(path_for(tmp_path / "agent.sqlite"))
    first = inbox.put(b"first", 1.5, "dicom", "CT1", "ALARA_EDGE", "10.0.0.1:4000")
    second = inbox.put(b"second", 2.5, "dicom")
    inbox.close()  # as if the agent stopped here

    again = Inbox(tmp_path / "agent-inbox.sqlite")
    assert [(i.id, again.load(i), i.size, i.received_at, i.calling_ae) for i in again.pending()] == [
        (first.id, b"first", 5, 1.5, "CT1"), (second.id, b"second", 6, 2.5, None)]
    assert [i.data for i in again.pending()] == [None, None]  # a backlog is not read into memory at once
    again.remove([first.id])
    assert [again.load(i) for i in again.pending()] == [b"second"]
    assert count_pending(tmp_path / "agent.sqlite") == (1, 0)
    again.close()


def test_every_put_is_committed_in_full_sync_wal(tmp_path):
    inbox = Inbox(tmp_path / "x-inbox.sqlite")
    inbox.put(b"x" * 10_000, 1.0, "dicom")
    other = sqlite3.connect(tmp_path / "x-inbox.sqlite")  # another connection sees it: committed
    assert other.execute("SELECT length(data) FROM inbox").fetchone() == (10_000,)
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    other.close()
    inbox.close()


def test_a_removal_is_not_flushed_on_its_own_but_every_put_still_is(tmp_path):
    # A lost removal only makes the next start recognise the row as processed (tests/test_pipeline.py);
    # a put must never lose its flush because a removal came first.
    inbox = Inbox(tmp_path / "x-inbox.sqlite")
    first = inbox.put(b"x", 1.0, "dicom")
    inbox.remove([first.id])
    assert inbox._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL again for the next put
    inbox.close()


def test_no_inbox_file_means_nothing_pending(tmp_path):
    assert count_pending(tmp_path / "agent.sqlite") == (0, 0)


def test_the_space_of_a_burst_of_large_objects_is_given_back(tmp_path):
    inbox = Inbox(tmp_path / "x-inbox.sqlite")
    items = [inbox.put(b"x" * 1_000_000, float(n), "dicom") for n in range(30)]  # 30 MB waiting
    for item in items:
        inbox.remove([item.id])
    inbox.close()  # the last connection checkpoints
    assert (tmp_path / "x-inbox.sqlite").stat().st_size < 8_000_000


def _old_inbox(path, version: int, attempts: int = 0) -> None:
    """An inbox as an agent of an earlier schema left it, with one row waiting (schema 1 had no count;
    schema 2 kept it in the row)."""
    old = sqlite3.connect(path)
    counted = ", attempts INTEGER NOT NULL DEFAULT 0" if version >= 2 else ""
    old.execute("CREATE TABLE inbox (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, origin TEXT NOT NULL, "
                f"calling_ae TEXT, called_ae TEXT, peer TEXT, data BLOB NOT NULL{counted})")
    if version >= 2:
        old.execute("INSERT INTO inbox (received_at, origin, data, attempts) VALUES (1.0, 'dicom', x'00', ?)",
                    [attempts])
    else:
        old.execute("INSERT INTO inbox (received_at, origin, data) VALUES (1.0, 'dicom', x'00')")
    old.execute(f"PRAGMA user_version={version}")
    old.commit()
    old.close()


def test_an_inbox_from_before_attempts_were_counted_keeps_its_rows(tmp_path):
    path = tmp_path / "x-inbox.sqlite"
    _old_inbox(path, 1)
    inbox = Inbox(path)
    (item,) = inbox.pending()
    assert (inbox.load(item), item.attempts) == (b"\0", 0)
    inbox.taken(item.id)
    inbox.taken(item.id)
    assert inbox.pending()[0].attempts == 2
    inbox.close()


def test_a_large_object_is_put_without_copies_of_it_in_memory(tmp_path):
    """A 400 MB angiography run took 1.2 GB more at once while it was put (SQLite copied the bound
    value twice): enough to end the agent on a 2 GB box.  Measured in a process of its own."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, time
        from agent.store.inbox import Inbox
        def hwm():
            return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) * 1024
        inbox = Inbox({str(tmp_path / "inbox.sqlite")!r})
        data = os.urandom(64 << 20)
        before = hwm()
        item = inbox.put(data, time.time(), "dicom")
        grown = hwm() - before
        item.data = None  # read back from the file
        assert inbox.load(item) == data
        print(grown)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 16 << 20  # was 128 MiB more for a 64 MiB object


def test_counting_a_try_does_not_read_the_object(tmp_path):
    """Updating the count in the object's row made SQLite read the whole object, twice per object:
    a 400 MB image took 400 MB more at once and seconds.  Measured in a process of its own."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, time
        from agent.store.inbox import Inbox
        def hwm():
            return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) * 1024
        inbox = Inbox({str(tmp_path / "inbox.sqlite")!r})
        item = inbox.put(os.urandom(64 << 20), time.time(), "dicom")
        item.data = None
        before = hwm()
        inbox.taken(item.id)
        inbox.taken(item.id)
        grown = hwm() - before
        assert [i.attempts for i in inbox.pending()] == [2]
        print(grown)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 16 << 20  # was 64 MiB more for a 64 MiB object


def test_the_counts_of_an_inbox_of_schema_2_are_kept(tmp_path):
    path = tmp_path / "x-inbox.sqlite"
    _old_inbox(path, 2, attempts=3)  # a row that earlier runs died on three times
    inbox = Inbox(path)
    (item,) = inbox.pending()
    assert item.attempts == 3
    inbox.close()
    assert count_pending(tmp_path / "x.sqlite") == (1, 1)
    inbox = Inbox(path)
    inbox.remove([item.id])
    assert inbox.pending() == [] and inbox._conn.execute("SELECT COUNT(*) FROM tries").fetchone() == (0,)
    inbox.close()


def test_the_received_size_of_an_object_cut_to_its_header_survives_a_restart(tmp_path):
    """What was left out at receipt is said when the object is processed, after a restart too."""
    _old_inbox(tmp_path / "x-inbox.sqlite", 2)  # an inbox from before the column: its row is kept
    inbox = Inbox(tmp_path / "x-inbox.sqlite")
    inbox.put(b"header", 2.0, "dicom", received_size=3_000_000)
    inbox.close()
    again = Inbox(tmp_path / "x-inbox.sqlite")
    assert [(again.load(i), i.received_size) for i in again.pending()] == [(b"\0", None), (b"header", 3_000_000)]
    again.close()


def test_the_object_in_hand_when_a_run_died_counts_one_death_at_the_next_start(tmp_path):
    """The worker names the object it reads, extracts and checks in <inbox>-inhand; a run that dies
    meanwhile leaves the name, and the next start counts it once against that object."""
    path = tmp_path / "x-inbox.sqlite"
    inbox = Inbox(path)
    item = inbox.put(b"\0", 1.0, "dicom")
    other = inbox.put(b"\1", 2.0, "dicom")
    inbox.taken(item.id)
    inbox.taken(item.id)  # two earlier deaths
    inbox.holding(item)
    inbox.close()  # (the process ends without letting go of it)
    assert count_pending(tmp_path / "x.sqlite") == (2, 1)  # the third death: held back already
    for _ in range(2):  # counted once, by the first start after it
        inbox = Inbox(path)
        assert [(i.id, i.attempts) for i in inbox.pending()] == [(item.id, 3), (other.id, 0)]
        inbox.close()


def test_an_object_let_go_or_gone_counts_no_death(tmp_path):
    path = tmp_path / "x-inbox.sqlite"
    inbox = Inbox(path)
    item = inbox.put(b"\0", 1.0, "dicom")
    inbox.holding(item)
    inbox.holding(None)  # its processing ended
    inbox.close()
    inbox = Inbox(path)
    assert [i.attempts for i in inbox.pending()] == [0]
    inbox.holding(item)
    inbox.remove([item.id])  # processed; the run died before it let go
    inbox.close()
    inbox = Inbox(path)
    again = inbox.put(b"\1", 2.0, "dicom")  # (an emptied table gives its ids again)
    assert again.id == item.id and [i.attempts for i in inbox.pending()] == [0]
    inbox.close()


def test_a_run_that_dies_taking_in_a_damaged_inbox_leaves_no_death_on_a_renumbered_row(tmp_path, monkeypatch):
    """The rows taken in from a damaged inbox get new ids, so the object the -inhand file named there is not
    the row of that id here: a start that dies while taking them in (a power cut again) must not leave the
    old name for the next start, which would count a death against another object."""
    path = tmp_path / "x-inbox.sqlite"
    inbox = Inbox(path)
    first, *rest = [inbox.put(bytes([n]), float(n), "dicom") for n in range(4)]
    inbox.remove([first.id])  # the rows left are 2, 3, 4
    inbox.holding(rest[0])  # the run died with the object of row 2 in hand
    inbox.close()
    damage_inbox(path)

    class Died(BaseException):
        pass

    put, calls = Inbox.put, []

    def dying_put(self, *args, **kwargs):
        if len(calls) == 2:
            raise Died
        calls.append(args[0])
        return put(self, *args, **kwargs)

    monkeypatch.setattr(Inbox, "put", dying_put)
    try:
        Inbox(path)  # takes in the objects of rows 2 and 3 as rows 1 and 2, and dies
    except Died:
        pass
    monkeypatch.setattr(Inbox, "put", put)
    again = Inbox(path)
    assert [(again.load(i), i.attempts) for i in again.pending()] == [(b"\1", 0), (b"\2", 0)]
    again.close()


def test_a_name_left_from_before_a_power_cut_counts_no_death_against_the_object_now_under_its_id(tmp_path):
    """The -inhand file is not flushed: after a power cut it can name an object processed and removed before
    (its row gone, written back later than the inbox), whose id a new object has now (an emptied inbox
    gives its ids again). The death was counted against the new object."""
    path = tmp_path / "x-inbox.sqlite"
    inbox = Inbox(path)
    gone = inbox.put(b"\0", 1.0, "dicom")
    inbox.holding(gone)
    inbox.remove([gone.id])
    now = inbox.put(b"\1", 2.0, "dicom")
    inbox.close()
    assert now.id == gone.id and count_pending(tmp_path / "x.sqlite") == (1, 0)
    inbox = Inbox(path)
    assert [i.attempts for i in inbox.pending()] == [0]
    inbox.close()
