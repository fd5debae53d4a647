"""A command run as a user who may not write the agent's store (the store belongs to the service's user)
says so and what to do, instead of "not an alara-edge store" or a traceback."""
import os
import shutil

import pytest

from agent.store import Store
from tests.conftest import run_unprivileged as _run_unprivileged


@pytest.fixture
def read_only_store(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot drop its right to write any file")
    var = tmp_path / "var"
    Store.open(var / "alara-edge.sqlite").close()
    for p in var.iterdir():
        p.chmod(0o444)
    var.chmod(0o555)
    yield var / "alara-edge.sqlite"
    var.chmod(0o755)


@pytest.mark.parametrize("command", ["studies", "alerts", "stats", "staff", "outbox status", "outbox requeue",
                                     "ack alert-1 --by RT42"])
def test_a_store_this_user_may_not_write_is_one_line_that_says_whose_it_is(tmp_path, read_only_store, command):
    result = _run_unprivileged(*command.split(), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "is not an alara-edge store" not in result.stderr
    assert "sudo -u alara-edge" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
