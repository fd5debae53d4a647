"""The fast reader: the header of an image object is read, its pixel data is not."""
import io
import struct
import tracemalloc
import zlib

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from agent.extract import ExtractionError, extract_dataset, read_dataset
from agent.extract import reader
from tests.conftest import CORPUS

XA = "1.2.840.10008.5.1.4.1.1.12.1"


def xa_run(transfer_syntax: str) -> bytes:
    """A small multi-frame angiography image whose header states its DAP."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = XA
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.StudyInstanceUID, ds.Modality, ds.StudyDate, ds.StudyTime = generate_uid(), "XA", "20260101", "101010"
    ds.ImageAndFluoroscopyAreaDoseProduct = "250.0"  # dGy.cm2
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.NumberOfFrames = 1, "MONOCHROME2", 4
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(range(256)) * 4
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_the_pixel_data_of_an_image_is_not_read_and_its_dose_is(transfer_syntax):
    # a 400 MB run was copied whole into the dataset, for a header of a few kB
    ds = read_dataset(xa_run(transfer_syntax))
    assert "PixelData" not in ds
    assert ds.NumberOfFrames == 4
    assert extract_dataset(ds).totals.dap_total_Gym2 == pytest.approx(0.0025)


def deflated(header: Dataset, tail: bytes, mib_of_zeros: int) -> bytes:
    """``header`` as a deflated file whose dataset goes on with ``tail`` and ``mib_of_zeros`` MiB of zeros
    (about 1 kB of deflated data per MiB)."""
    header.file_meta = FileMetaDataset()
    header.file_meta.MediaStorageSOPClassUID, header.file_meta.MediaStorageSOPInstanceUID = \
        header.SOPClassUID, header.SOPInstanceUID
    header.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = DicomBytesIO()
    write_file_meta_info(meta, header.file_meta)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, header)
    deflater = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [deflater.compress(body.getvalue() + tail)]
    zeros = bytes(1 << 20)
    out += [deflater.compress(zeros) for _ in range(mib_of_zeros)]
    return b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(out) + deflater.flush()


def header(sop_class: str = XA) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = sop_class, generate_uid(), generate_uid()
    ds.Modality, ds.StudyDate, ds.StudyTime = "XA", "20260101", "101010"
    ds.ImageAndFluoroscopyAreaDoseProduct = "250.0"  # dGy.cm2
    return ds


def test_a_deflate_bomb_is_not_inflated_whole_and_says_why(monkeypatch):
    # 1.5 MB deflated inflating to 1.5 GB took 6.4 GB in the agent: a 1-4 GB box was killed
    monkeypatch.setattr(reader, "MAX_INFLATED_BYTES", 1 << 20, raising=False)
    mib = 48
    bomb = deflated(header(), struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, mib << 20), mib)  # private OB
    tracemalloc.start()
    try:
        with pytest.raises(ExtractionError, match="deflated dataset inflates beyond 1 MiB before its pixel data"):
            read_dataset(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # the limit and the input, not the 48 MiB it would inflate to


def test_a_deflated_image_larger_than_the_limit_has_its_header_read(monkeypatch):
    monkeypatch.setattr(reader, "MAX_INFLATED_BYTES", 1 << 20, raising=False)
    ds = header()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 1024, 1024, 1, 8
    pixels = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 4 << 20)
    ds = read_dataset(deflated(ds, pixels, 4))  # only what comes before the pixel data must fit
    assert "PixelData" not in ds
    assert extract_dataset(ds).totals.dap_total_Gym2 == pytest.approx(0.0025)


def test_a_cut_deflate_stream_is_an_extraction_error():
    data = deflated(header(), b"", 1)
    with pytest.raises(ExtractionError, match="deflated dataset cut short"):
        read_dataset(data[:-200])


def test_a_deflated_dose_report_reads_as_its_plain_encoding():
    # deflated reports now go through the lean reader too (the content tree of the inflated bytes)
    plain = CORPUS / "CT-RDSR-Siemens-Multi-1.dcm"
    ds = pydicom.dcmread(plain)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    want, got = extract_dataset(read_dataset(plain)), extract_dataset(read_dataset(out.getvalue()))
    assert got.events == want.events and got.totals == want.totals and got.events


def _image(ts: str, **extra) -> bytes:
    """A small image in transfer syntax ``ts`` (JPEG Baseline: encapsulated pixel data)."""
    from pydicom.encaps import encapsulate

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.Rows, ds.Columns, ds.BitsAllocated = "CT", 64, 64, 16
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = b"\x01\x02" * 64 * 64
    if ts == "1.2.840.10008.1.2.4.50":
        ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 4000 + b"\xff\xd9"])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                "1.2.840.10008.1.2.4.50"])  # implicit, explicit, big endian, JPEG (encapsulated)
def test_the_bytes_before_the_pixel_data_are_the_image_without_it(tmp_path, ts):
    """What a rejected image is kept as (pipeline): a valid DICOM file, its header whole, no pixel data."""
    icon = Dataset()
    icon.Rows = icon.Columns = 2
    icon.BitsAllocated = 8
    icon.PixelData = b"\x00\x01\x02\x03"  # pixel data inside an item is part of the header
    data = _image(ts, StudyDescription="Thorax", IconImageSequence=[icon])
    (tmp_path / "image.dcm").write_bytes(data)
    at = reader.pixel_data_offset(tmp_path / "image.dcm")
    assert at is not None and len(data) - at >= 4000
    kept = pydicom.dcmread(io.BytesIO(data[:at]))
    assert "PixelData" not in kept and kept.StudyDescription == "Thorax"
    assert kept.IconImageSequence[0].PixelData == b"\x00\x01\x02\x03"
    assert kept.SOPInstanceUID == pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID


def test_an_object_without_pixel_data_or_deflated_or_cut_is_not_cut(tmp_path):
    (tmp_path / "sr.dcm").write_bytes((CORPUS / "ESR_non-dose.dcm").read_bytes())
    assert reader.pixel_data_offset(tmp_path / "sr.dcm") is None
    deflated = _image(DeflatedExplicitVRLittleEndian)
    (tmp_path / "deflated.dcm").write_bytes(deflated)
    assert reader.pixel_data_offset(tmp_path / "deflated.dcm") is None
    (tmp_path / "cut.dcm").write_bytes(_image(ExplicitVRLittleEndian)[:200])  # ends inside the header
    assert reader.pixel_data_offset(tmp_path / "cut.dcm") is None
