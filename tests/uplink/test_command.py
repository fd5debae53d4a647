"""``alara-edge outbox``: the backlog and dead letters from the command line; queueing rows again."""
from __future__ import annotations

import json

from agent.store import Store, outbox
from tests.conftest import run_agent
from tests.uplink.conftest import enqueue


def _config(tmp_path) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "store.sqlite"}"\n')
    return str(path)


def test_status_lists_dead_letters_and_requeue_sends_them_again(tmp_path):
    store = Store.open(tmp_path / "store.sqlite")
    enqueue(store, 4, kind="alert")
    with store.transaction() as tx:
        outbox.settle(tx, sent=[1, 2, 3], delivered=[1, 2], dead=[(3, "0x87 Not authorized")])
    store.close()
    config = _config(tmp_path)

    out = run_agent("outbox", "-c", config, "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["counts"] == {"pending": 1, "inflight": 0, "delivered": 2, "dead": 1} and status["last_seq"] == 4
    assert [(d["seq"], d["last_error"]) for d in status["dead"]] == [(3, "0x87 Not authorized")]
    assert "dead seq=3 kind=alert" in run_agent("outbox", "-c", config, "status").stdout

    assert "1 row(s) queued again" in run_agent("outbox", "-c", config, "requeue").stdout
    assert "2 row(s) queued again" in run_agent("outbox", "-c", config, "requeue", "--seq", "1-2").stdout
    assert json.loads(run_agent("outbox", "-c", config, "status", "--json").stdout)["counts"]["pending"] == 4
    assert json.loads(run_agent("outbox", "status", "--json", "-c", config).stdout)["counts"]["pending"] == 4  # -c last


def test_requeue_refuses_while_the_agent_holds_the_store(tmp_path):
    store = Store.open(tmp_path / "store.sqlite")  # the running agent
    try:
        out = run_agent("outbox", "-c", _config(tmp_path), "requeue")
        assert out.returncode == 1 and "stop it first" in out.stderr
        assert run_agent("outbox", "-c", _config(tmp_path), "status").returncode == 0  # reading is fine
    finally:
        store.close()


def test_a_reversed_seq_range_is_refused_not_a_silent_nothing(tmp_path):
    """`requeue --seq 9-2` said "0 row(s) queued again" and exited 0."""
    store = Store.open(tmp_path / "store.sqlite")
    enqueue(store, 10)
    store.close()
    out = run_agent("outbox", "-c", _config(tmp_path), "requeue", "--seq", "9-2")
    assert out.returncode == 2 and "the lower first" in out.stderr and "queued again" not in out.stdout
