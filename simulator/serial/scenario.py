"""Scenario files: what a simulated device measures over time, and which faults it shows when.

A scenario is TOML::

    driver = "diamentor"
    description = "…"
    seed = 1
    after = "idle"              # after the last phase: "idle" (rate 0) or "hold" (keep the last rate)

    [device]                    # options of the simulated device (see simulator.serial.devices)
    unit = 1

    [[phase]]                   # piecewise-constant true rate, in the device's rate unit
    duration_s = 5
    rate = 12.0

    [[fault]]                   # at_s: seconds since start
    at_s = 8
    kind = "unplug"             # split_writes | garbage | bit_flip | unplug | counter_reset
    duration_s = 1.5            # split_writes: how long writes are split; unplug: how long unplugged
    count = 1                   # garbage: bursts; bit_flip: frames hit
    bytes = 24                  # garbage: bytes per burst
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(gt=0)
    rate: float = Field(ge=0)


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at_s: float = Field(ge=0)
    kind: Literal["split_writes", "garbage", "bit_flip", "unplug", "counter_reset"]
    duration_s: float = Field(default=1.0, gt=0)
    count: int = Field(default=1, ge=1)
    bytes: int = Field(default=24, ge=1, le=4096)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    driver: str
    description: str = ""
    seed: int = 1
    after: Literal["idle", "hold"] = "idle"
    device: dict[str, Any] = {}
    phase: list[Phase] = []
    fault: list[Fault] = []

    def rate_at(self, t: float) -> float:
        """The true rate ``t`` seconds after the start."""
        end = 0.0
        for phase in self.phase:
            end += phase.duration_s
            if t < end:
                return phase.rate
        return self.phase[-1].rate if self.after == "hold" and self.phase else 0.0

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.phase)


def load(path: str | Path) -> Scenario:
    with open(path, "rb") as fh:
        return Scenario.model_validate(tomllib.load(fh))


def default_for(driver: str) -> Path:
    """The scenario played when none is given: ``simulator/scenarios/<driver>.toml``."""
    return SCENARIOS / f"{driver}.toml"
