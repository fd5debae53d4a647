"""Staff investigational levels per wearer, body part and quarter."""
from decimal import Decimal

import pytest

from agent.checks.staff import evaluate_staff
from tests.checks.conftest import rules_from

DEFAULTS = rules_from()


def levels(store, wearer, body_part, quarter, total):
    with store.transaction() as tx:
        return [a.level for a in evaluate_staff(tx, DEFAULTS, wearer, body_part, quarter, total, station="ROOM1")]


@pytest.mark.parametrize("body_part,il1,il2", [
    ("whole_body", "1.25", "3.75"), ("lens", "3.75", "11.25"), ("extremity", "12.5", "37.5"), ("skin", "12.5", "37.5")])
def test_nrc_model_levels_fire_at_and_above(store, body_part, il1, il2):
    below = Decimal(il1) - Decimal("0.01")
    assert levels(store, "W1", body_part, "2025-Q1", below) == []
    assert levels(store, "W1", body_part, "2025-Q1", Decimal(il1)) == ["IL I"]
    assert levels(store, "W1", body_part, "2025-Q1", Decimal(il2) - Decimal("0.01")) == []
    assert levels(store, "W1", body_part, "2025-Q1", Decimal(il2)) == ["IL II"]
    assert levels(store, "W1", body_part, "2025-Q1", Decimal(il2) * 2) == []  # each level once per quarter
    assert levels(store, "W1", body_part, "2025-Q2", Decimal(il2)) == ["IL I", "IL II"]  # a new quarter


def test_alert_names_the_wearer_not_a_patient_and_says_to_verify(store):
    with store.transaction() as tx:
        (a,) = evaluate_staff(tx, DEFAULTS, "W-017", "whole_body", "2025-Q3", 1.31, station="ROOM1")
    d = a.to_dict()
    assert (d["kind"], d["severity"], d["wearer_id"], d["body_part"], d["period"], d["unit"]) == \
        ("staff_investigational_level", "warning", "W-017", "whole_body", "2025-Q3", "mSv")
    assert d["value"] == 1.31 and d["threshold"] == 1.25
    assert "to be verified by the site" in d["source"] and d["source"].endswith("(not verified)")


def test_unknown_body_part_is_refused(store):
    with store.transaction() as tx, pytest.raises(ValueError, match="unknown body part 'hand'"):
        evaluate_staff(tx, DEFAULTS, "W1", "hand", "2025-Q1", 1)
