"""Text written as UTF-8 by a modality that declares ISO_IR 100 (or no character set) is read as UTF-8,
with a warning: read as Latin-1 it came out as 'TÃ³rax', which matched no exam name."""
from __future__ import annotations

from agent.checks.study import view
from agent.extract import extract_file
from agent.extract.reader import read_dataset
from agent.extract import extract_dataset
from simulator import rdsr
from tests.checks.conftest import rules_from
from tests.conftest import CORPUS

WARNING = "text is UTF-8 though the object declares ISO_IR 100: read as UTF-8"


def _as_latin_1(text: str) -> str:
    """What pydicom must be given so that ISO_IR 100 writes the UTF-8 bytes of ``text``."""
    return text.encode("utf-8").decode("latin-1")


def _extract(ds):
    return extract_dataset(read_dataset(rdsr.encode(ds)))


def test_a_siemens_protocol_name_written_as_utf8_is_read_as_written():
    report = extract_file(CORPUS / "CT-RDSR-Siemens_Flash-TAP-SS.dcm")
    assert report.events[0].protocol == "testæøå"  # the bytes 74 65 73 74 c3 a6 c3 b8 c3 a5
    # the file's only other quirk: its modulation type is stated only in each acquisition's Comment
    assert report.warnings == [WARNING, "X-Ray Modulation Type read from the acquisition's Comment (4 times)"]


def test_utf8_under_iso_ir_100_in_the_content_tree_and_the_header_names_the_exam():
    ds = rdsr.ct_report([rdsr.CTSeries(_as_latin_1("Tórax rutina"), target_region="Entire body", phantom="body")],
                        description=_as_latin_1("TC de tórax"))
    ds.SpecificCharacterSet = "ISO_IR 100"
    report = _extract(ds)
    assert (report.events[0].protocol, report.study.description) == ("Tórax rutina", "TC de tórax")
    assert report.warnings == [WARNING]
    assert view([report.to_dict()], rules_from(), "CT1").exam.name == "CT chest"


def test_latin_1_text_that_is_latin_1_stays_as_it_is():
    ds = rdsr.ct_report([rdsr.CTSeries("Tórax rutina ±5°", target_region="Chest")], description="TC de tórax")
    ds.SpecificCharacterSet = "ISO_IR 100"
    report = _extract(ds)
    assert (report.events[0].protocol, report.study.description) == ("Tórax rutina ±5°", "TC de tórax")
    assert report.warnings == []


def test_utf8_declared_as_utf8_is_not_touched():
    ds = rdsr.ct_report([rdsr.CTSeries("TÃ³rax", target_region="Chest")], description="Ã©")
    ds.SpecificCharacterSet = "ISO_IR 192"  # the letters Ã ³ themselves, correctly declared
    report = _extract(ds)
    assert (report.events[0].protocol, report.study.description) == ("TÃ³rax", "Ã©")
    assert report.warnings == []
