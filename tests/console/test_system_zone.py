"""Without [station] timezone the console shows times in the agent's zone: TZ when it is set (the zone
the agent's own local-time rules, e.g. staff quarters, use), else the machine's /etc/localtime."""
from __future__ import annotations

from agent.console.component import system_zone


def test_tz_environment_is_the_agents_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    assert system_zone() == "America/New_York"
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert system_zone() == "Europe/Berlin"


def test_without_tz_or_with_a_non_iana_tz_the_machines_zone(monkeypatch):
    monkeypatch.delenv("TZ", raising=False)
    machine = system_zone()
    monkeypatch.setenv("TZ", "no/such-zone")
    assert system_zone() == machine
