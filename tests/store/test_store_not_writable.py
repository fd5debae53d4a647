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


def test_a_store_on_a_read_only_file_system_is_refused_naming_the_file_system(tmp_path):
    """An SD card the kernel remounted read-only after I/O errors: the line says so (it advised a chown)."""
    import shutil
    import subprocess
    import sys

    import pytest

    if not (shutil.which("unshare") and shutil.which("mount")):
        pytest.skip("util-linux's unshare and mount are not installed")
    folder = tmp_path / "card"
    folder.mkdir()
    script = ("from agent.store import Store, StoreError\n"
              f"Store.open({str(folder / 'a.sqlite')!r}).close()\n"
              "import subprocess\n"
              f"subprocess.run(['mount', '-o', 'remount,ro', {str(folder)!r}], check=True)\n"
              "try:\n"
              f"    Store.open({str(folder / 'a.sqlite')!r})\n"
              "except StoreError as exc:\n"
              "    print(exc)\n")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             f'mount -t tmpfs tmpfs "$1" && exec "$2" -c "$3"', "sh", str(folder), sys.executable,
                             script], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "mount" in result.stderr and not result.stdout:
        pytest.skip(f"no mount namespace here: {result.stderr.strip()}")
    assert "mounted read-only" in result.stdout and "chown" not in result.stdout, result.stdout + result.stderr
