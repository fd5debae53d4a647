"""Timezone Offset From UTC (0008,0201): the object's times are as the modality states them, with the
UTC offset where the object gives one (docs/uplink.md, Payloads) -- also when it gives it in the header."""
from __future__ import annotations

import warnings

import pydicom

from agent.extract import extract_dataset
from tests.conftest import CORPUS


def _read(name: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(CORPUS / name)


def _walk(items):
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def test_header_offset_is_put_on_study_and_event_times():
    ds = _read("RF-RDSR-Philips_Allura.dcm")
    ds.TimezoneOffsetFromUTC = "-0500"
    datetimes = [item for item in _walk(ds.ContentSequence) if item.get("ValueType") == "DATETIME"]
    datetimes[-1].DateTime = "20160315084500.5+0100"  # its own offset wins over the header's
    report = extract_dataset(ds)
    assert report.study.datetime == "2016-03-15T08:43:36.482-05:00"
    started = [e.datetime_started for e in report.events]
    assert started[0] == "2016-03-15T08:44:13.294-05:00"
    assert "2016-03-15T08:45:00.5+01:00" in started
    assert all(s.endswith(("-05:00", "+01:00")) for s in started)


def test_corpus_file_with_offset_and_without():
    assert extract_dataset(_read("CT-RDSR-ToshibaPixelMed.dcm")).study.datetime == "2016-12-06T16:46:07+00:00"
    assert extract_dataset(_read("RF-RDSR-Philips_Allura.dcm")).study.datetime == "2016-03-15T08:43:36.482"


def test_invalid_offset_is_ignored_with_a_warning():
    report = extract_dataset(_read("RF-RDSR-GE.dcm"))  # states 'UTC-04:00'
    assert report.study.datetime == "2019-03-16T13:26:23"
    assert any("TimezoneOffsetFromUTC" in w for w in report.warnings)
