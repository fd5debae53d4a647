"""Serial dosimeter simulators on pseudo-terminals: ``python -m simulator.serial DRIVER --link PATH``.

:class:`Simulator` plays a :mod:`scenario <simulator.serial.scenario>` on a :class:`~simulator.serial.link.PtyLink`
in a thread of its own, and injects the scenario's faults into the byte stream:

* ``split_writes`` — every frame is written in random pieces a few milliseconds apart;
* ``garbage`` — a burst of random bytes between frames (what a baud or parity mismatch looks like);
* ``bit_flip`` — one bit of the next frame(s) flipped;
* ``unplug`` — the pty is closed and the link removed; after ``duration_s`` a new pty appears behind
  the same link (re-enumeration); the device keeps its state, as a device does when only its cable moves;
* ``counter_reset`` — the device's cumulative counter goes back to zero.
"""
from __future__ import annotations

import random
import select
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .devices import DEVICES, SimDevice
from .link import PtyLink
from .scenario import Fault, Scenario, default_for, load

__all__ = ["Simulator", "Scenario", "load", "default_for", "DEVICES"]


class Simulator:
    def __init__(self, scenario: Scenario, link: str | Path, step_s: float = 0.005):
        self.scenario = scenario
        self.link = PtyLink(link)
        self.rng = random.Random(scenario.seed)
        self.device: SimDevice = DEVICES[scenario.driver](scenario.device, self.rng)
        self.step_s = step_s
        self.events: list[tuple[float, str]] = []  # (seconds since start, what happened), for tests and logs
        self._faults = sorted(scenario.fault, key=lambda f: f.at_s)
        self._split_until = 0.0
        self._flips_left = 0
        self._replug_at: Optional[float] = None
        self._out: list[tuple[float, bytes]] = []  # (due, bytes), in order
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.t0 = 0.0
        self.t0_wall = 0.0  # time.time() at start, to compare event times with readings

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Simulator":
        self.link.plug()
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self._send_all(self.device.banner())
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.scenario.driver}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.link.unplug()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- the loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            t = now - self.t0
            self.device.advance(now - last, self.scenario.rate_at(t))
            last = now
            self._apply_faults(t)
            if self.link.plugged:
                data = self.link.read()
                if data:
                    self._send_all(self.device.receive(data))
                self._send_all(self.device.emit(t))
                self._flush(now)
                select.select([self.link.master], [], [], self.step_s)
            else:
                time.sleep(self.step_s)

    def _apply_faults(self, t: float) -> None:
        if self._replug_at is not None and t >= self._replug_at:
            self._replug_at = None
            name = self.link.plug()
            self._note(t, f"replugged as {name}")
        while self._faults and self._faults[0].at_s <= t:
            fault = self._faults.pop(0)
            self._inject(fault, t)

    def _inject(self, fault: Fault, t: float) -> None:
        self._note(t, fault.kind)
        if fault.kind == "split_writes":
            self._split_until = t + fault.duration_s
        elif fault.kind == "garbage":
            for _ in range(fault.count):
                self._queue(bytes(self.rng.randrange(256) for _ in range(fault.bytes)), split=False)
        elif fault.kind == "bit_flip":
            self._flips_left += fault.count
        elif fault.kind == "counter_reset":
            self.device.counter_reset()
            self._send_all(self.device.banner())
        elif fault.kind == "unplug":
            self._out.clear()
            self.link.unplug()
            self._replug_at = t + fault.duration_s

    def _note(self, t: float, what: str) -> None:
        self.events.append((round(t, 3), what))

    def _send_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            if self._flips_left and frame:
                self._flips_left -= 1
                i = self.rng.randrange(len(frame))
                frame = frame[:i] + bytes([frame[i] ^ (1 << self.rng.randrange(8))]) + frame[i + 1:]
            self._queue(frame, split=self.elapsed() < self._split_until)

    def _queue(self, data: bytes, split: bool) -> None:
        due = max([time.monotonic()] + [d for d, _ in self._out[-1:]])
        if not split or len(data) < 2:
            self._out.append((due, data))
            return
        cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, self.rng.randint(1, 3))))
        for a, b in zip([0] + cuts, cuts + [len(data)]):
            self._out.append((due, data[a:b]))
            due += self.rng.uniform(0.002, 0.02)

    def _flush(self, now: float) -> None:
        while self._out and self._out[0][0] <= now:
            self.link.write(self._out.pop(0)[1])


def from_args(driver: str, link: str | Path, scenario_path: str | Path | None = None) -> Simulator:
    """The simulator ``python -m simulator.serial`` builds: the given scenario or the driver's default."""
    scenario = load(scenario_path or default_for(driver))
    if scenario.driver != driver:
        raise ValueError(f"scenario is for {scenario.driver!r}, not {driver!r}")
    return Simulator(scenario, link)
