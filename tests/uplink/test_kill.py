"""The sender process SIGKILLed at random moments: nothing committed is lost, duplicates stay within the window.

The process is ``simulator/outbox_feeder.py`` (see ``tests/uplink/crash.py``); ``bench/kill_loop.py``
runs the same loop 1,000 times.
"""
from __future__ import annotations

import os
import random
import signal

import pytest

from agent import config as config_mod
from agent.config import Config
from agent.store import connect
from tests.uplink.conftest import central_event_ids, central_view, wait_for
from tests.uplink.crash import feeder, kill_loop, write_config
from tests.uplink.tap import Tap

ITERATIONS = 20


@pytest.mark.parametrize("window", [10, Config().mqtt.window])  # a tight bound, and the default's
def test_sender_killed_at_random_moments_loses_nothing(broker, tmp_path, central, window):
    config = write_config(tmp_path, broker.port, window=window)
    cfg = config_mod.load(config)
    central(cfg)
    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 30)))
    result = kill_loop(config, ITERATIONS, random.Random(seed),
                       central_dups=lambda: central_view(cfg).get("duplicates_dropped", 0))

    db = connect(cfg.store.path)
    try:
        rows = db.execute("SELECT event_id, state FROM outbox").fetchall()
    finally:
        db.conn.close()
    assert {state for _, state in rows} == {"delivered"}, f"seed {seed}"
    wait_for(lambda: len(central_event_ids(cfg)) >= len(rows), what="every row at the central receiver")
    at_central = central_event_ids(cfg)
    assert len(at_central) == len(set(at_central)) == len(rows), f"seed {seed}"
    assert result["acknowledged"] <= set(at_central), f"seed {seed}: acknowledged rows missing"
    view = central_view(cfg)
    assert view["seq_gaps"] == 0, f"seed {seed}"
    assert max(result["per_kill"]) <= cfg.mqtt.window, f"seed {seed}: {result['per_kill']}"
    assert len(result["acknowledged"]) > ITERATIONS  # the kills did land while rows were being committed


def test_killed_sender_leaves_a_retained_offline_status(broker, tmp_path):
    config = write_config(tmp_path, broker.port, require_subscriber=False)
    tap = Tap(broker.port, topic="alara/+/+/status")
    try:
        proc = feeder(config, "will", count=10000, interval=0.01)
        wait_for(lambda: tap.messages and tap.messages[-1].json["body"]["state"] == "online", what="online")
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        wait_for(lambda: tap.messages[-1].json["body"]["state"] == "offline", what="the will")
        will = tap.messages[-1]
        assert will.json["body"]["reason"] == "connection lost" and will.content_type == "application/json"
        assert will.user == {"event_id": will.json["event_id"], "schema": "alara-edge/status/1",
                             "seq": str(will.json["seq"])}  # the user properties every message has
    finally:
        tap.close()
