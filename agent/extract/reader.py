"""Read a DICOM object quickly, leaving the SR content tree encoded.

:func:`read_dataset` returns an ordinary :class:`pydicom.dataset.FileDataset`: pydicom
reads the file meta, the header and everything after the content tree.  The top-level
Content Sequence (0040,A730) alone is kept as its encoded bytes (a pydicom raw element):
pydicom decodes it on first access like any other raw element, and
:func:`agent.extract.extract_dataset` reads it with the lean reader instead, which is what
keeps a 300-event report well under a second (see :mod:`agent.extract.srparse`).  An
undefined-length Content Sequence has to be walked to find its end; the items read on the
way are kept with the bytes (:class:`~agent.extract.srparse.ParsedSequence`).

Pixel data, and whatever follows it, is not read: the agent needs only the header.

Use it instead of ``pydicom.dcmread`` wherever the object is then extracted.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset
from pydicom.filereader import read_dataset as _pydicom_read_dataset
from pydicom.filereader import read_partial
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from agent.extract import srparse
from agent.extract.record import ExtractionError

_CONTENT = Tag(srparse.CONTENT_SEQUENCE)
_PIXEL_DATA = 0x7FE00000  # group 7FE0: (float) pixel data and its offset tables
_UNDEFINED = 0xFFFFFFFF


def _stop_at_content(tag, vr, length) -> bool:
    """Stop at the SR Content Sequence (read apart, below) or at the pixel data, which is never
    read: a 400 MB angiography run would otherwise be copied whole into the dataset."""
    return tag == srparse.CONTENT_SEQUENCE or tag >= _PIXEL_DATA


def read_dataset(source: Union[bytes, bytearray, memoryview, str, os.PathLike]) -> FileDataset:
    """Parse a DICOM file (bytes or path) with the SR Content Sequence left encoded.

    Raises whatever pydicom raises for data that is not DICOM, and
    :class:`~agent.extract.record.ExtractionError` for a malformed content tree.
    """
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
    fp = io.BytesIO(data)
    ds = read_partial(fp, stop_when=_stop_at_content, force=True)
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        # rare; positions refer to the inflated stream
        return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
    start = fp.tell()
    implicit, little = ds.original_encoding
    if start >= len(data) or implicit is None:
        return ds  # no Content Sequence: pydicom read everything
    tag, length, vpos = srparse.element_header(data, start, implicit, little)
    if tag != srparse.CONTENT_SEQUENCE:  # the pixel data (and what follows it) is left unread
        return ds
    if length == _UNDEFINED:
        value, after = srparse.read_undefined_sequence(data, vpos, implicit, little)
    else:
        after = vpos + length
        if after > len(data):
            raise ExtractionError("Content Sequence longer than the file")
        value = data[vpos:after]
    ds[_CONTENT] = RawDataElement(_CONTENT, "SQ", len(value), value, vpos, implicit, little)
    if after < len(data):
        fp.seek(after)
        rest = _pydicom_read_dataset(fp, implicit, little, parent_encoding=ds.original_character_set)
        for elem in rest.elements():
            ds[elem.tag] = elem
    return ds
