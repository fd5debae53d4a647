"""A simulated dosimeter on a real pty, read by a real SerialSource into a real store."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from agent.bus import Bus
from agent.config import SerialPortConfig
from agent.sources.serial import SerialSource
from agent.store import Store
from simulator.serial import Scenario, Simulator

REPO = Path(__file__).resolve().parents[3]
PROFILES = REPO / "config" / "serial-profiles"


@dataclass
class Rig:
    sim: Simulator
    source: SerialSource
    store: Store
    bus_messages: list = field(default_factory=list)
    hook_calls: list = field(default_factory=list)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; health={self.source.health()} sim events={self.sim.events}")

    def wait_until_sim(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds - self.sim.elapsed()))

    @property
    def health(self) -> dict[str, Any]:
        return next(iter(self.source.health().values()))

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.store.db.execute(sql, params or []).fetchall()


@pytest.fixture
def rig(tmp_path):
    """``rig(scenario_dict, **serial_options)`` → a running :class:`Rig`; stopped after the test."""
    made: list[Rig] = []

    def start(scenario: dict, hooks: dict | None = None, **options: Any) -> Rig:
        link = tmp_path / "serial" / "by-id" / f"usb-SIM_{scenario['driver']}-if00-port0"
        sim = Simulator(Scenario.model_validate(scenario), link).start()
        store = Store.open(tmp_path / "agent.sqlite")
        bus = Bus()
        rig_ = Rig(sim, None, store)  # type: ignore[arg-type]
        bus.subscribe(lambda topic, payload: rig_.bus_messages.append((topic, payload)))
        hooks = dict(hooks or {})
        cfg = SerialPortConfig(driver=scenario["driver"], port=str(link), reconnect_max_s=0.5, **options)
        rig_.source = SerialSource([cfg], store, bus, station="room-3", **hooks)
        rig_.source.start()
        made.append(rig_)
        return rig_

    yield start
    for r in made:
        r.source.stop()
        r.sim.stop()
        r.store.close()
