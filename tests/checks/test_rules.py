"""Reference tables as a physicist edits them: loaded, converted, refused with a clear message, reloaded."""
import subprocess
import tomllib
from decimal import Decimal

import pytest

from agent.checks import ChecksStage, RulesError, load_rules
from agent.config import ChecksConfig, check_text
from tests.checks.conftest import rules_from
from tests.conftest import REPO, agent_cmd, agent_env

ROW = """
[[checks.level]]
id = "{id}"
kind = "DRL"
modality = ["RF", "XA"]
exam = "XA coronary angiography"
quantity = "{quantity}"
value = {value}
unit = "{unit}"
scope = "per_examination"
source = "test table"
evidence = "local"
verified = true
"""


def test_no_configuration_gives_active_defaults():
    rules = load_rules(ChecksConfig())
    ids = {r.id for r in rules.levels}
    assert {"aapm2011-adult-head", "aapm2011-alert-ctdivol", "ncrp168-kar-first", "ncrp168-kap-srdl",
            "nrc-il1-whole-body"} <= ids
    assert not any(r.kind in ("DRL", "local_DRL") for r in rules.levels)  # national DRLs only when configured
    kap_first = next(r for r in rules.levels if r.id == "ncrp168-kap-first")
    assert kap_first.threshold == Decimal("0.03")  # 300 Gy·cm² in the record's Gy·m², exactly


@pytest.mark.parametrize("value,unit", [(300, "Gy·cm²"), (300000, "mGy·cm²"), (30000, "cGy·cm²"), (0.03, "Gy·m²"),
                                        (3000, "dGy·cm²"), (300, "Gy.cm2")])
def test_dap_rows_in_any_unit_load_to_the_same_threshold(tmp_path, value, unit):
    table = tmp_path / "t.toml"
    table.write_text(ROW.format(id="x", quantity="DAP", value=value, unit=unit))
    rules = load_rules(ChecksConfig(tables=[table]))
    row = next(r for r in rules.levels if r.id == "x")
    assert (row.quantity, row.threshold) == ("KAP", Decimal("0.03"))


def test_unknown_unit_is_refused_naming_file_row_and_unit(tmp_path):
    table = tmp_path / "t.toml"
    table.write_text(ROW.format(id="cath-kap", quantity="KAP", value=30, unit="Gy·cm3"))
    with pytest.raises(RulesError) as err:
        load_rules(ChecksConfig.model_construct(tables=[table]))
    message = str(err.value)
    assert str(table) in message and "id 'cath-kap'" in message and "unknown unit 'Gy·cm3' for KAP" in message


def test_unknown_quantity_is_refused(tmp_path):
    table = tmp_path / "t.toml"
    table.write_text(ROW.format(id="cath-x", quantity="effective dose", value=1, unit="mSv"))
    problems = check_text(f'[checks]\ntables = ["{table}"]\n')
    assert len(problems) == 1 and "unknown quantity 'effective dose'" in problems[0] and "cath-x" in problems[0]


def test_inline_row_errors_are_reported_by_check_config():
    text = '[[checks.level]]\n' + ROW.split("[[checks.level]]\n")[1].format(id="a", quantity="KAP", value=1, unit="mGy")
    (problem,) = check_text(text)
    assert problem.startswith("checks.level.0") and "unknown unit 'mGy' for KAP" in problem


def test_a_row_that_cannot_be_checked_is_refused():
    text = ROW.format(id="a", quantity="CTDIvol", value=10, unit="mGy")  # CTDIvol is per sequence, not per exam
    (problem,) = check_text(text)
    assert "cannot be CTDIvol per_examination" in problem


def test_rule_ids_are_unique_across_tables(tmp_path):
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text(ROW.format(id="same", quantity="KAP", value=1, unit="Gy·cm²"))
    with pytest.raises(RulesError, match="rule id 'same' is already used in"):
        load_rules(ChecksConfig.model_construct(tables=[tmp_path / "a.toml", tmp_path / "b.toml"]))


def test_missing_table_is_refused():
    problems = check_text('[checks]\ntables = ["no/such/table.toml"]\n')
    assert len(problems) == 1 and "no/such/table.toml: cannot read table" in problems[0]


def test_configured_row_replaces_the_built_in_one_where_it_applies():
    rules = rules_from("""
[[checks.level]]
id = "site-head"
kind = "notification_value"
modality = "CT"
region = "head"
patient_group = "adult"
quantity = "CTDIvol"
value = 70
unit = "mGy"
scope = "per_event"
source = "site"
evidence = "local"
verified = true
""")
    head = rules.select(["notification_value"], modality="CT", quantity="CTDIvol", exam="CT head", region="head", age=40)
    torso = rules.select(["notification_value"], modality="CT", quantity="CTDIvol", exam="CT chest", region="torso", age=40)
    assert [r.id for r in head] == ["site-head"]
    assert [r.id for r in torso] == ["aapm2011-adult-torso"]


def test_reload_keeps_the_previous_rules_when_a_table_is_bad(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(ROW.format(id="good", quantity="KAP", value=30, unit="Gy·cm²"))
    stage = ChecksStage(load_rules(ChecksConfig(tables=[good])))
    before = stage.rules
    good.write_text(ROW.format(id="good", quantity="KAP", value=30, unit="furlongs"))
    config = tmp_path / "agent.toml"
    config.write_text(f'[checks]\ntables = ["{good}"]\n')
    assert stage.reload_file(config) is False
    assert stage.rules is before
    assert "rules_reload_failed" in capsys.readouterr().out
    good.write_text(ROW.format(id="good", quantity="KAP", value=40, unit="Gy·cm²"))
    assert stage.reload_file(config) is True
    assert next(r for r in stage.rules.levels if r.id == "good").threshold == Decimal("0.004")


def test_every_example_table_in_config_passes_check_config():
    files = sorted((REPO / "config").rglob("*.toml"))
    assert {"checks.example.toml", "local-drl.example.toml", "uk-ukhsa-2024-adult-ct.toml",
            "eu-rp185-2018-paediatric-ct.toml"} <= {f.name for f in files}
    runs = [(f, subprocess.Popen(agent_cmd("check-config", str(f.relative_to(REPO))), cwd=REPO, env=agent_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for f in files]
    for f, proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip().endswith(": ok"), f"{f}: {err}"
    # every row keeps its source and evidence
    for f in files:
        for row in tomllib.loads(f.read_text()).get("checks", {}).get("level", []):
            assert row["source"] and row["evidence"] and isinstance(row["verified"], bool), (f, row["id"])


def test_unverified_rows_say_so_in_their_source_text():
    rules = load_rules(ChecksConfig())
    head = next(r for r in rules.levels if r.id == "aapm2011-adult-head")
    srdl = next(r for r in rules.levels if r.id == "ncrp168-kar-srdl")
    assert head.source_text.endswith("(not verified)") and "2011" in head.source_text
    assert not srdl.source_text.endswith("(not verified)")


def test_example_config_activates_its_tables_and_a_missing_one_is_reported(monkeypatch):
    monkeypatch.chdir(REPO)  # its table paths are relative to the working directory
    text = (REPO / "config" / "checks.example.toml").read_text()
    rules = load_rules(ChecksConfig.model_validate(tomllib.loads(text)["checks"]))
    assert "config/reference-levels/uk-ukhsa-2024-adult-ct.toml" in rules.sources
    assert [r.id for r in rules.select(["notification_first"], modality="XA", quantity="Ka_r")] == ["local-kar-first-2gy"]
    (problem,) = check_text(text.replace("uk-ukhsa-2024-adult-ct.toml", "missing.toml"))
    assert "config/reference-levels/missing.toml: cannot read table" in problem
