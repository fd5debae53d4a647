"""`alara-edge alerts`, `ack` and `stats` as a user runs them (subprocesses on a real store)."""
import json

import pytest

from agent.store import Store
from tests.checks.conftest import Checked, ct_event, ct_report, rf_report, rules_from
from tests.conftest import run_agent


@pytest.fixture
def agent_dir(tmp_path):
    """A configuration and a store holding a few checked reports (closed again, as after the agent stops)."""
    db = tmp_path / "var" / "agent.sqlite"
    config = tmp_path / "agent.toml"
    config.write_text(f'[store]\npath = "{db}"\nspool_dir = "{tmp_path / "spool"}"\n')
    store = Store.open(db)
    c = Checked(store, rules_from())
    c.ingest(ct_report([ct_event("Head", 85.0, 900.0)], description="CT head"))
    c.ingest(rf_report(dose_rp_Gy=5.5, dap_Gym2=0.01, fluoro_time_s=300))
    c.ingest(ct_report([ct_event("Daily QA", 10.0, 20.0, target_region="Other")]))
    store.close()
    return config


def test_alerts_json_lists_alert_objects(agent_dir):
    r = run_agent("alerts", "-c", str(agent_dir), "--json")
    assert r.returncode == 0, r.stderr
    alerts = json.loads(r.stdout)
    assert sorted((a["kind"], a["severity"]) for a in alerts) == [
        ("ct_notification_value", "warning"), ("fluoro_threshold", "critical"), ("fluoro_threshold", "warning"),
        ("fluoro_threshold", "warning")]
    for a in alerts:
        assert {"id", "kind", "severity", "value", "threshold", "unit", "rule", "source", "study_instance_uid",
                "acknowledged", "message", "raised_at", "station"} <= set(a)
        assert isinstance(a["value"], float) and isinstance(a["threshold"], float) and a["acknowledged"] is False
    head = next(a for a in alerts if a["kind"] == "ct_notification_value")
    assert (head["value"], head["threshold"], head["unit"], head["rule"]) == (85.0, 80.0, "mGy", "aapm2011-adult-head")


def test_ack_requires_a_reason_for_critical_and_alerts_shows_it(agent_dir):
    alerts = json.loads(run_agent("alerts", "-c", str(agent_dir), "--json").stdout)
    critical = next(a for a in alerts if a["severity"] == "critical")
    r = run_agent("ack", critical["id"], "--by", "RT-7", "-c", str(agent_dir))
    assert r.returncode == 1 and "a reason is required" in r.stderr
    r = run_agent("ack", critical["id"], "--by", "RT-7", "--reason", "operator informed, follow-up booked",
                  "-c", str(agent_dir))
    assert r.returncode == 0, r.stderr
    (acked,) = [a for a in json.loads(run_agent("alerts", "-c", str(agent_dir), "--json").stdout)
                if a["id"] == critical["id"]]
    assert acked["acknowledged"] is True
    assert (acked["ack"]["by"], acked["ack"]["reason"]) == ("RT-7", "operator informed, follow-up booked")
    r = run_agent("alerts", "-c", str(agent_dir), "--open")
    assert r.returncode == 0 and critical["id"] not in r.stdout and "ct_notification_value" in r.stdout
    assert run_agent("ack", "alert-unknown", "--by", "RT-7", "-c", str(agent_dir)).returncode == 1


def test_stats_shows_the_unmatched_bucket(agent_dir):
    r = run_agent("stats", "-c", str(agent_dir), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {(x["exam"], x["quantity"]) for x in rows} >= {("CT head", "DLP"), ("unmatched", "DLP")}
    human = run_agent("stats", "-c", str(agent_dir))
    assert human.returncode == 0 and "unmatched" in human.stdout and "CT head" in human.stdout


def test_commands_on_an_empty_installation(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "none.sqlite"}"\n')
    assert json.loads(run_agent("alerts", "-c", str(config), "--json").stdout) == []
    assert json.loads(run_agent("stats", "-c", str(config), "--json").stdout) == []
