"""Reconnect pacing: exponential, capped, with jitter, reset after a good connection."""
from __future__ import annotations

import random

from agent.uplink.connection import Backoff


def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(1.0, 8.0, random.Random(7))
    waits = [backoff.next() for _ in range(6)]
    for wait, ceiling in zip(waits, [1, 2, 4, 8, 8, 8]):
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits[3:]}) == 3  # jittered: a fleet does not retry in step
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_two_agents_draw_different_delays():
    a, b = Backoff(1.0, 60.0, random.Random(1)), Backoff(1.0, 60.0, random.Random(2))
    assert [a.next() for _ in range(5)] != [b.next() for _ in range(5)]
