"""Crediting cumulative counters and dose rates: never a negative dose, never the same dose twice.

A cumulative value (a DAP meter's DAP since reset, a Geiger counter's lifetime pulse count) is turned
into increments against the last value seen, which is kept in the store so that reconnecting or
restarting the agent never counts a dose again:

* an increase is credited as it is;
* a decrease that fits a wrap-around (the counter has a modulus, the forward distance is less than
  half of it and, when the reading states a ``max_rate``, no more than that rate could have counted
  since the last value) is credited as the forward distance;
* any other decrease — or a reading the driver marked ``reset`` — is a counter reset: the new value
  is what accumulated since the reset, and is credited;
* a decrease within ``JITTER_REL`` of the last value of a measured (not counted) quantity is read-out
  noise: nothing is credited and the higher value stays the reference.

A reset counts only once the next reading confirms it (:meth:`agent.readings.ledger.Ledger._confirmed`,
which keeps the reading in question in the device's stored state): one corrupt reading is not a reset.

A dose rate is integrated over the time since the previous rate reading, holding the previous value
(it is what the device showed during that interval), and only when that interval is at most
``max_gap_s``: after a silence (unplug) the dose in between is unknown and is not invented.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from drivers.base import Reading

JITTER_REL = 1e-3


@dataclass(frozen=True)
class Credit:
    amount: float  # in the reading's canonical unit (rates: the unit times hours or seconds, see integrate)
    event: str  # first | increase | wrap | reset | jitter | held (a reset awaiting confirmation: Ledger._confirmed)


def credit_cumulative(last: Optional[float], last_t: Optional[float], reading: Reading) -> tuple[Credit, float]:
    """The credit for ``reading`` (given the last reference value and its time) and the new reference value."""
    value = reading.value
    if last is None:
        return Credit(value if reading.since_reset else 0.0, "first"), value
    if reading.status == "reset":
        return Credit(value, "reset"), value
    if value >= last:
        return Credit(value - last, "increase"), value
    if reading.wrap:
        forward = (value - last) % reading.wrap
        dt = max(1.0, reading.time - last_t) if last_t is not None else 1.0
        if forward < reading.wrap / 2 and (reading.max_rate is None or forward <= reading.max_rate * dt):
            return Credit(forward, "wrap"), value
    if reading.quantity != "counts" and last - value <= JITTER_REL * last:  # a pulse counter never jitters
        return Credit(0.0, "jitter"), last
    return Credit(value, "reset"), value


def integrate(last_value: Optional[float], last_t: Optional[float], t: float, max_gap_s: float,
              per_s: float) -> float:
    """Dose between the previous rate reading and ``t``; ``per_s`` converts rate·seconds to dose
    (1/3600 for Sv/h → Sv).  Zero for the first reading, a backwards clock or a gap above ``max_gap_s``."""
    if last_value is None or last_t is None:
        return 0.0
    dt = t - last_t
    if dt <= 0 or dt > max_gap_s:
        return 0.0
    return max(0.0, last_value) * dt * per_s
