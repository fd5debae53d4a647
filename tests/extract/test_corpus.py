"""Every file of the corpus: extracted, or rejected for a stated reason; never an error."""
from __future__ import annotations

import io
import warnings

import pydicom
import pytest

from agent.extract import extract_dataset, extract_file, read_dataset
from agent.extract.record import Rejected
from agent.extract.common import hstr
from agent.extract.sr import content_tree, value_text
from tests.conftest import CORPUS
from tests.extract.conftest import corpus_files, corpus_index

# file name prefix → why it is not a dose object we extract
REJECTED = {
    "ESR_non-dose.dcm": "is not a radiation dose report",  # an Enhanced SR holding a diagnostic report
    # NM/PET images carry the administered activity, which the RRDSR reports (and is extracted);
    # one record per image slice would repeat the same administration hundreds of times.
    "NM-NmIm-": "no X-ray dose",
    "NM-PetIm-": "no X-ray dose",
}

KIND_SOURCE = {  # file name prefix → (kind, source)
    "CT-ESR-": ("ct", "enhanced-sr"), "CT-RDSR-": ("ct", "rdsr"), "NM-CT-RDSR": ("ct", "rdsr"),
    "CT-SC-": ("ct", "secondary-capture"), "DX-Im-": ("projection", "image-header"),
    "MG-Im-Hologic": ("projection", "secondary-capture"), "MG-Im-": ("projection", "image-header"),
    "PX-Im-": ("projection", "image-header"), "DX-RDSR": ("projection", "rdsr"), "Dual-RDSR": ("projection", "rdsr"),
    "MG-RDSR": ("projection", "rdsr"), "RF-RDSR": ("projection", "rdsr"), "RF-No-kVp": ("projection", "rdsr"),
    "RF-Pat-": ("projection", "rdsr"), "RF-ESR-": ("projection", "enhanced-sr"),
    "NM-RRDSR": ("radiopharmaceutical", "rdsr"),
}


def _lookup(table: dict, name: str):
    return next((v for prefix, v in table.items() if name.startswith(prefix)), None)


def test_the_corpus_is_there():
    assert len(corpus_files()) == 65


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_every_corpus_file_is_extracted_or_rejected_with_a_reason(path):
    why = _lookup(REJECTED, path.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if why:
            with pytest.raises(Rejected, match=why):
                extract_file(path)
            return
        rep = extract_file(path)  # an ExtractionError here fails the test
    assert (rep.kind, rep.source) == _lookup(KIND_SOURCE, path.name)
    info = corpus_index()[path.name]
    if info["sop_class_uid"].startswith("1.2.840.10008.5.1.4.1.1.88."):  # an SR: the README counts its events
        assert len(rep.events) == (info["ct_acquisitions"] or 0) + (info["projection_irradiation_events"] or 0)
    else:
        assert rep.events, "a header-based record has the exposure(s) it describes"
    assert rep.sop_instance_uid and rep.sop_class_uid == info["sop_class_uid"]


SR_FILES = [p for p in corpus_files()
            if corpus_index()[p.name]["sop_class_uid"].startswith("1.2.840.10008.5.1.4.1.1.88.") and p.name not in REJECTED]


@pytest.mark.parametrize("path", SR_FILES, ids=lambda p: p.name)
def test_lean_reader_and_pydicom_see_the_same_content_tree(path):
    data = path.read_bytes()
    fast, _ = content_tree(read_dataset(data))
    slow, _ = content_tree(pydicom.dcmread(io.BytesIO(data)))
    assert fast == slow
    assert fast.children, "the tree is not empty"


@pytest.mark.parametrize("name", ["RF-No-kVp-and-others.dcm", "CT-ESR-GE_VCT.dcm", "MG-RDSR-Giotto-DBT.dcm",
                                  "NM-RRDSR-Siemens.dcm", "DX-Im-GE_XR220-1.dcm", "CT-SC-Philips_Brilliance16P.dcm"])
def test_extraction_is_the_same_from_a_pydicom_dataset(name, report):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        via_pydicom = extract_dataset(pydicom.dcmread(CORPUS / name))
    assert via_pydicom.to_dict() == report(name).to_dict()


def test_reader_keeps_elements_after_the_content_tree():
    data = (CORPUS / "RF-No-kVp-and-others.dcm").read_bytes()  # implicit VR, undefined-length sequences
    fast, full = read_dataset(data), pydicom.dcmread(io.BytesIO(data))
    tags = [e.tag for e in fast.elements()]
    assert tags == [e.tag for e in full.elements()]
    assert tags.index(0x0040A730) < len(tags) - 1, "this file has elements after the Content Sequence"
    # the Content Sequence left encoded still decodes like any pydicom element
    assert fast.ContentSequence == full.ContentSequence


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_header_attributes_read_from_the_bytes_are_what_pydicom_reads(path):
    """``hstr`` reads plain-ASCII single values straight from the encoded bytes; on every attribute
    of every corpus header (private ones included) that must give the text pydicom's conversion gives."""
    fast = read_dataset(path)
    slow = pydicom.dcmread(path, force=True, stop_before_pixels=True)  # the pixel data is not read
    compared = 0
    for elem in slow:  # top-level attributes: those the extraction reads
        keyword = elem.keyword
        if not keyword or elem.VR == "SQ":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = value_text(elem.value).strip(" \x00") or None if elem.value is not None else None
            assert hstr(fast, keyword) == expected, keyword
        compared += 1
    assert compared > 10
