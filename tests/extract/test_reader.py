"""The fast reader: the header of an image object is read, its pixel data is not."""
import io

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from agent.extract import extract_dataset, read_dataset

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
