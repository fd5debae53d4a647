"""Benchmarks that measure in rounds, the compared runs taking turns (a shared VM's speed drifts
within minutes): the ratio of two series of rates, round by round."""
from __future__ import annotations

import statistics


def paired(rates: list[float], reference: list[float]) -> str:
    """The median of the rounds' ratios, and each round's: ``0.74  (per round: 0.72, 0.81, …)``."""
    ratios = [a / b for a, b in zip(rates, reference)]
    return f"{statistics.median(ratios):.2f}  (per round: {', '.join(f'{r:.2f}' for r in ratios)})"
