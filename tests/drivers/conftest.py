"""Helpers to run a sans-IO driver against byte strings, as the serial source would."""
from __future__ import annotations

from drivers.base import Driver, Problem, Reading


class Collected:
    """What a driver gave so far (``items``), as readings and as problems."""

    items: list

    @property
    def readings(self) -> list[Reading]:
        return [i for i in self.items if isinstance(i, Reading)]

    @property
    def problems(self) -> list[Problem]:
        return [i for i in self.items if isinstance(i, Problem)]


class Harness(Collected):
    """Drives a driver: ``tick`` to get requests, ``reply`` to feed the device's answer."""

    def __init__(self, driver: Driver, t: float = 1000.0):
        self.driver = driver
        self.t = t
        self.items: list = []
        driver.reopened(t)

    def tick(self, dt: float = 0.0) -> bytes:
        self.t += dt
        out, items = self.driver.tick(self.t)
        self.items.extend(items)
        return out

    def feed(self, data: bytes, dt: float = 0.001) -> list:
        self.t += dt
        items = self.driver.feed(data, self.t)
        self.items.extend(items)
        return items

