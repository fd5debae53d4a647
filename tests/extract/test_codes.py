"""Concept matching by (scheme, value): SNOMED-RT and SNOMED-CT spellings, and the meaning fallback."""
from __future__ import annotations

from pydicom.sr import _snomed_dict

from agent.extract import codes as C


def test_srt_to_sct_pairs_agree_with_pydicoms_snomed_table():
    table = _snomed_dict.mapping["SRT"]
    checked = 0
    for srt, sct in C.srt_to_sct().items():
        if srt in table:
            assert table[srt] == sct, srt
            checked += 1
    assert checked >= 20


def test_both_snomed_spellings_are_one_concept():
    assert C.key("SRT", "P5-06000")[0] == C.FLUOROSCOPY.key == C.key("SCT", "44491008")[0]
    assert C.key("SNM3", "G-C171")[0] == C.LATERALITY.key


def test_a_wrong_code_with_the_right_meaning_is_matched_by_meaning():
    key, by_meaning = C.key("DCM", "113632", "Anode Target Material")  # Giotto writes 113632 for 111632
    assert key == C.ANODE_TARGET.key and by_meaning


def test_a_known_code_is_never_reinterpreted_by_its_meaning():
    key, by_meaning = C.key("DCM", "113824", "Something else entirely")
    assert key == C.EXPOSURE_TIME.key and not by_meaning
    assert C.key("99PRIVATE", "1", "Unheard of")[0] == ("99PRIVATE", "1")
