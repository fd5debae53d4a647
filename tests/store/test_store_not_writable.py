"""A store file the agent's user may not write (a backup restored as root) stops the start with one clear
line; before, the agent started, told modalities Success, reported itself healthy and never stored a thing."""
from agent.store import Store
from tests.conftest import start_failures_unprivileged


def test_a_read_only_store_file_is_refused_at_start(tmp_path):
    db = tmp_path / "var" / "alara-edge.sqlite"
    Store.open(db).close()
    db.chmod(0o444)  # e.g. owned by root after `cp /backup/alara-edge.sqlite ...`
    failed = start_failures_unprivileged(tmp_path, db, tmp_path / "var" / "spool", timeout=20)
    assert len(failed) == 1 and "not writable" in failed[0]["error"]
