"""`alara-edge run` on a store directory its user may not write says what to do, not only "Permission denied"."""
from tests.conftest import start_failures_unprivileged


def test_a_store_directory_the_agent_may_not_write_gives_a_hint(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    failed = start_failures_unprivileged(tmp_path, locked / "var" / "alara-edge.sqlite", locked / "var" / "spool")
    assert len(failed) == 1 and "Permission denied" in failed[0]["error"]
    assert "[store] path" in failed[0]["hint"]
