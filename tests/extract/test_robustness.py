"""Malformed input: only Rejected / ExtractionError come out, and absent values stay absent.

Truncated and bit-flipped copies of corpus files, and random bytes, go through
``extract_file`` (the path a received object takes).  Whatever the damage, extraction
either gives a record that serialises as strict JSON, or raises one of the two documented
exceptions (pydicom's InvalidDicomError is accepted too, as the brief allows).
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.errors import InvalidDicomError

from agent.extract import extract_file
from agent.extract.record import ExtractionError, Rejected, Report
from tests.extract.conftest import corpus_files

SMALL = [p for p in corpus_files() if p.stat().st_size < 120_000]
DATA = {p.name: p.read_bytes() for p in SMALL}
ALLOWED = (Rejected, ExtractionError, InvalidDicomError)


def _check(data: bytes, tmp: Path) -> None:
    tmp.write_bytes(data)
    try:
        rep = extract_file(tmp)
    except ALLOWED:
        return
    _assert_sound(rep)


def _assert_sound(rep: Report) -> None:
    text = json.dumps(rep.to_dict(), allow_nan=False)  # no NaN/inf, everything serialisable
    assert json.loads(text)["sop_instance_uid"]
    for ev in rep.events:
        for value in vars(ev).values():
            assert not (isinstance(value, float) and not math.isfinite(value))


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(name=st.sampled_from(sorted(DATA)), cut=st.floats(min_value=0, max_value=1))
def test_truncated_files(tmp_path, name, cut):
    data = DATA[name]
    _check(data[: int(len(data) * cut)], tmp_path / "cut.dcm")


@SETTINGS
@given(name=st.sampled_from(sorted(DATA)),
       flips=st.lists(st.tuples(st.floats(min_value=0, max_value=1), st.integers(1, 255)), min_size=1, max_size=12))
def test_bit_flipped_files(tmp_path, name, flips):
    data = bytearray(DATA[name])
    for where, mask in flips:
        i = min(int(where * len(data)), len(data) - 1)
        data[i] ^= mask
    _check(bytes(data), tmp_path / "flipped.dcm")


@SETTINGS
@given(data=st.binary(min_size=0, max_size=4096))
def test_random_bytes(tmp_path, data):
    _check(data, tmp_path / "random.dcm")


@SETTINGS
@given(data=st.binary(min_size=0, max_size=2048))
def test_random_bytes_after_a_dicom_preamble(tmp_path, data):
    _check(b"\0" * 128 + b"DICM" + data, tmp_path / "random.dcm")


# -- absent is absent, never 0 ------------------------------------------------------------------
_NUMERIC = (int, float)


def _numbers(rep: Report) -> dict[str, object]:
    found = {f"totals.{k}": v for k, v in vars(rep.totals).items() if v is not None}
    for i, ev in enumerate(rep.events):
        for k, v in vars(ev).items():
            if isinstance(v, _NUMERIC) and not isinstance(v, bool):
                found[f"events[{i}].{k}"] = v
        for s in ev.sources:
            found.update({f"events[{i}].sources.{k}": v for k, v in vars(s).items() if isinstance(v, _NUMERIC)})
        for f in ev.filters:
            found.update({f"events[{i}].filters.{k}": v for k, v in vars(f).items() if isinstance(v, _NUMERIC)})
    return found


def _blank(ds, how: str) -> None:
    stack = list(ds.get("ContentSequence", []))
    while stack:
        item = stack.pop()
        if item.get("ValueType") == "NUM":
            if how == "empty":
                item.MeasuredValueSequence = []
            else:
                for mv in item.get("MeasuredValueSequence", []):
                    # written as text: pydicom will not put an invalid DS into a dataset
                    mv["NumericValue"] = DataElement(0x0040A30A, "LO", "n/a")
        stack.extend(item.get("ContentSequence", []))


@pytest.mark.parametrize("name", ["CT-RDSR-Siemens_Flash-QA-DS.dcm", "CT-RDSR-Toshiba_DoseCheck.dcm",
                                  "RF-RDSR-Canon-Ultimaxi-mGyDoseAtRP.dcm", "MG-RDSR-Hologic_2D.dcm",
                                  "DX-RDSR-Carestream_DRXEvolution.dcm", "NM-RRDSR-Siemens.dcm"])
@pytest.mark.parametrize("how", ["empty", "not a number"])
def test_values_that_are_not_there_are_never_zero(tmp_path, name, how):
    """Every measured value emptied (or made unreadable): the record has no numbers at all."""
    ds = pydicom.dcmread(Path(corpus_files()[0]).parent / name)
    _blank(ds, how)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    (tmp_path / name).write_bytes(buffer.getvalue())
    rep = extract_file(tmp_path / name)
    assert rep.events or rep.administrations, "the structure is still read"
    assert _numbers(rep) == {}
    assert all(a.activity_MBq is None for a in rep.administrations)
    if how != "empty":
        assert any("is not a number" in w for w in rep.warnings)


def _items(ds, value_type: str, concept: str):
    """Every content item of ``ds`` (depth first) of ``value_type`` whose concept has the code ``concept``."""
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop()
        if item.get("ValueType") == value_type and item.ConceptNameCodeSequence[0].CodeValue == concept:
            yield item
        stack.extend(item.get("ContentSequence", []))


# -- a number too large for a float ---------------------------------------------------------------
def _ctdivol(text: str, unit: str, tmp_path: Path) -> Report:
    ds = pydicom.dcmread(Path(corpus_files()[0]).parent / "CT-RDSR-Siemens-Multi-1.dcm")
    for item in _items(ds, "NUM", "113830"):
        mv = item.MeasuredValueSequence[0]
        mv["NumericValue"] = DataElement(0x0040A30A, "LO", text)  # as text: pydicom checks DS
        mv.MeasurementUnitsCodeSequence[0].CodeValue = unit
    path = tmp_path / "big.dcm"
    ds.save_as(path)
    return extract_file(path)


@pytest.mark.parametrize("text", ["1e400", "-1e400"])
def test_a_value_too_large_for_a_float_is_omitted_not_infinity(tmp_path, text):
    """DS allows '1e400'; as a float it is inf: not a dose, and not JSON (the MQTT report carried
    'Infinity' and the console's /api/state answered 500)."""
    rep = _ctdivol(text, "mGy", tmp_path)
    _assert_sound(rep)
    assert all(e.ctdivol_mGy is None for e in rep.events)
    if text == "1e400":
        assert any("ctdivol_mGy: value out of range; omitted" in w for w in rep.warnings)


def test_a_conversion_that_overflows_is_omitted(tmp_path):
    """A CTDIvol of 1e306 Gy is finite as stated and inf in mGy: omitted, with a warning."""
    rep = _ctdivol("1e306", "Gy", tmp_path)
    _assert_sound(rep)
    assert all(e.ctdivol_mGy is None for e in rep.events)
    assert any("value out of range" in w for w in rep.warnings)


def test_events_that_share_an_irradiation_event_uid_are_said(tmp_path):
    # eight fluoroscopy events under one UID: the store keeps one event, so the report must say why
    ds = pydicom.dcmread(Path(corpus_files()[0]).parent / "RF-RDSR-Siemens-Zee.dcm")
    n = 0
    for item in _items(ds, "UIDREF", "113769"):
        item.UID = "1.2.3.4.5"
        n += 1
    path = tmp_path / "one-uid.dcm"
    ds.save_as(path)
    rep = extract_file(path)
    assert n == len(rep.events) > 1
    assert f"{n} irradiation events share the UID 1.2.3.4.5: only the first is stored as an event" in rep.warnings
    assert not any("share the UID" in w for w in extract_file(Path(corpus_files()[0]).parent
                                                              / "RF-RDSR-Siemens-Zee.dcm").warnings)


# -- a number the report itself qualifies as no value (Numeric Value Qualifier, CID 42) -----------------
def _qualified(name: str, concept: str, qualifier: tuple[str, str, str], tmp_path: Path, *, inside: bool = False,
               text: str = "0", fd: float | None = None) -> Report:
    """``name`` with every NUM item of ``concept`` stated as ``text`` and qualified by ``qualifier`` (beside the
    Measured Value Sequence as PS3.3 puts it, or ``inside`` its item as some writers do)."""
    ds = pydicom.dcmread(Path(corpus_files()[0]).parent / name)
    n = 0
    for item in _items(ds, "NUM", concept):
        mv = item.MeasuredValueSequence[0]
        mv.NumericValue = text
        if fd is not None:
            mv.FloatingPointValue = fd
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = qualifier
        (mv if inside else item).NumericValueQualifierCodeSequence = Sequence([code])
        n += 1
    assert n
    path = tmp_path / f"qualified-{name}"
    ds.save_as(path)
    return extract_file(path)


def test_a_value_qualified_as_unknown_is_omitted_not_its_placeholder(tmp_path):
    """A CTDIvol written '0' with the qualifier 'Value unknown' was a CTDIvol of 0 mGy in the record (the study's
    statistics and the dose checks took it for a measurement)."""
    rep = _qualified("CT-RDSR-Siemens-Multi-1.dcm", "113830", ("114010", "DCM", "Value unknown"), tmp_path)
    assert [e.ctdivol_mGy for e in rep.events] == [None]
    assert [e.dlp_mGycm for e in rep.events] == [7.46]  # the other values stay
    assert "Mean CTDIvol: stated as 'Value unknown' (Numeric Value Qualifier); value omitted" in rep.warnings


@pytest.mark.parametrize("inside", [False, True])
def test_a_dap_qualified_as_not_a_number_is_omitted(tmp_path, inside):
    rep = _qualified("RF-RDSR-Siemens-Zee.dcm", "122130", ("114000", "DCM", "Not a number"), tmp_path,
                     inside=inside, fd=math.nan)
    _assert_sound(rep)
    assert rep.events and all(e.dap_Gym2 is None for e in rep.events)
    said = "Dose Area Product: stated as 'Not a number' (Numeric Value Qualifier); value omitted"
    assert f"{said} ({len(rep.events)} times)" in rep.warnings


def test_a_limit_stated_with_value_out_of_range_is_not_the_dose(tmp_path):
    rep = _qualified("CT-RDSR-Siemens-Multi-1.dcm", "113838", ("114009", "DCM", "Value out of range"), tmp_path,
                     text="9999")
    assert [e.dlp_mGycm for e in rep.events] == [None]


def test_a_qualifier_outside_cid_42_keeps_the_value_and_says_so(tmp_path):
    rep = _qualified("CT-RDSR-Siemens-Multi-1.dcm", "113830", ("X1", "99VENDOR", "Estimated"), tmp_path, text="0.15")
    assert [e.ctdivol_mGy for e in rep.events] == [0.15]
    assert "Mean CTDIvol: value qualified as 'Estimated' (not a qualifier of CID 42); kept" in rep.warnings


@pytest.mark.parametrize("numeric_value", ["absent", "empty"])
def test_a_value_stated_as_floating_point_value_is_read(tmp_path, numeric_value):
    """Floating Point Value (0040,A161) holds the value a writer could not put in the DS Numeric Value; with the
    Numeric Value empty it was 'stated without a value' and the CTDIvol was lost."""
    ds = pydicom.dcmread(Path(corpus_files()[0]).parent / "CT-RDSR-Siemens-Multi-1.dcm")
    for item in _items(ds, "NUM", "113830"):
        mv = item.MeasuredValueSequence[0]
        mv.FloatingPointValue = 0.15000000000000002
        if numeric_value == "absent":
            del mv.NumericValue
        else:
            mv.NumericValue = None
    path = tmp_path / "fd.dcm"
    ds.save_as(path)
    rep = extract_file(path)
    assert [e.ctdivol_mGy for e in rep.events] == [0.15000000000000002]
    assert not any("CTDIvol" in w for w in rep.warnings)


def _dap_with_float(tmp_path: Path, text: str, fd: float) -> Report:
    ds = pydicom.dcmread(Path(corpus_files()[0]).parent / "RF-RDSR-Siemens-Zee.dcm")
    for item in _items(ds, "NUM", "122130"):
        item.MeasuredValueSequence[0].NumericValue = text
        item.MeasuredValueSequence[0].FloatingPointValue = fd
    path = tmp_path / "dap-fd.dcm"
    ds.save_as(path)
    return extract_file(path)


def test_a_numeric_value_rounded_below_its_floating_point_value_is_not_read_as_the_dose(tmp_path):
    """PS3.3 requires the Floating Point Value where the Numeric Value "has insufficient precision to represent
    the value as a string": a writer keeping two decimals states a DAP of 0.00000123 Gy.m2 as '0.00'. Each event
    had a DAP of 0."""
    rep = _dap_with_float(tmp_path, "0.00", 1.23e-06)
    assert rep.events and all(e.dap_Gym2 == 1.23e-06 for e in rep.events)
    assert "Dose Area Product: the Numeric Value has less precision than the Floating Point Value; that is read" \
        in rep.warnings


@pytest.mark.parametrize("text, fd", [("1E-06", 1e-06), ("72.4890976", 72.48909759521484),
                                      ("0.1", 0.10000000149011612)])  # float32 0.1, written as the writer meant it
def test_a_floating_point_value_that_agrees_leaves_the_stated_decimal(tmp_path, text, fd):
    """The same number (to a float's last digits, e.g. a float32 converted) is read from its decimal text."""
    rep = _dap_with_float(tmp_path, text, fd)
    assert all(e.dap_Gym2 == float(text) for e in rep.events)
    assert not any("Floating Point Value" in w for w in rep.warnings)
