"""Crash-test machinery shared by ``tests/uplink/test_kill.py`` and ``bench/kill_loop.py``.

The sender is ``simulator/outbox_feeder.py``: it commits outbox rows one by one (printing each
after its commit, like a C-STORE response) while the real uplink drains them to the broker.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from tests.conftest import REPO, agent_env


def write_config(tmp_path: Path, port: int, **mqtt) -> Path:
    path = tmp_path / "feeder.toml"
    mqtt_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {
        "host": "127.0.0.1", "port": port, "window": 10, "rate_per_s": 300, "keepalive_s": 5,
        "reconnect_min_s": 0.05, "reconnect_max_s": 0.5, **mqtt}.items())
    path.write_text(f'[station]\nsite = "st-test"\nid = "ct-01"\n\n[logging]\nlevel = "warning"\n\n'
                    f'[store]\npath = "{tmp_path / "store.sqlite"}"\nspool_dir = "{tmp_path / "spool"}"\n\n'
                    f'[central]\ndatabase = "{tmp_path / "central.sqlite"}"\nclient_id = "central-kill"\n\n'
                    f'[mqtt]\n{mqtt_lines}\n')
    return path


def feeder(config: Path, tag: str, count: int, interval: float = 0.004) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "simulator.outbox_feeder", "-c", str(config), "--tag", tag,
                             "--count", str(count), "--interval", str(interval)],
                            cwd=REPO, env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def committed(output: str) -> set[str]:
    return {line.split()[2] for line in output.splitlines() if line.startswith("committed ")}


def kill_loop(config: Path, iterations: int, rng: random.Random, central_dups: Callable[[], int]) -> dict:
    """SIGKILL the feeder ``iterations`` times at random moments, then drain; returns what was seen.

    One kill in five lands during start-up; the others a random 0-0.8 s after the feeder is
    ready, i.e. while it commits rows, drains them, or both.  ``per_kill`` holds the
    duplicates the receiver dropped during each iteration (the re-sends the previous kill caused).
    """
    acknowledged: set[str] = set()
    per_kill: list[int] = []
    for i in range(iterations + 1):
        before = central_dups()
        last = i == iterations
        proc = feeder(config, "final" if last else f"it{i}", count=0 if last else rng.randint(10, 80))
        if last:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0 and out.strip().endswith("drained"), out
        else:
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.6))  # during start-up (store open, migrations, connect)
            else:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                time.sleep(rng.uniform(0.0, 0.8))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            acknowledged |= committed(out)
        time.sleep(0.1)
        per_kill.append(central_dups() - before)
    return {"acknowledged": acknowledged, "per_kill": per_kill}
