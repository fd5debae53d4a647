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

A Deflated Explicit VR Little Endian dataset is inflated at most :data:`MAX_INFLATED_BYTES`: a
deflated object of 1.5 MB can inflate to gigabytes of zeros (a deflate bomb), and pydicom inflated
it whole, then copied it (6.4 GB peak in the agent for a 1.5 GB bomb; a 1-4 GB edge box is
killed).  One whose header does not fit (what the agent reads: up to the pixel data) is not read
and raises :class:`~agent.extract.record.ExtractionError` (kept for inspection as an ``error``).

Use it instead of ``pydicom.dcmread`` wherever the object is then extracted.
"""
from __future__ import annotations

import io
import os
import zlib
from pathlib import Path
from typing import BinaryIO, Union

from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset
from pydicom.filereader import _read_file_meta_info, read_partial, read_preamble
from pydicom.filereader import read_dataset as _pydicom_read_dataset
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from agent.extract import srparse
from agent.extract.record import ExtractionError

_CONTENT = Tag(srparse.CONTENT_SEQUENCE)
_PIXEL_DATA = 0x7FE00000  # group 7FE0: (float) pixel data and its offset tables
_UNDEFINED = 0xFFFFFFFF
MAX_INFLATED_BYTES = 64 << 20  # a deflated dataset is inflated this far at most (its header must fit)
_DEFLATED = str(DeflatedExplicitVRLittleEndian).encode()  # (its UID, as a file meta naming it holds it)


def _stop_at_content(tag, vr, length) -> bool:
    """Stop at the SR Content Sequence (read apart, below) or at the pixel data, which is never
    read: a 400 MB angiography run would otherwise be copied whole into the dataset.  (``tag.real``:
    the plain number, compared in C; pydicom's tag compares in Python, ten times slower, per element.)"""
    value = tag.real
    return value == srparse.CONTENT_SEQUENCE or value >= _PIXEL_DATA


def _stop_at_pixels(tag, vr, length) -> bool:
    return tag.real >= _PIXEL_DATA


def read_dataset(source: Union[bytes, bytearray, memoryview, str, os.PathLike]) -> FileDataset:
    """Parse a DICOM file (bytes or path) with the SR Content Sequence left encoded.

    Raises whatever pydicom raises for data that is not DICOM, and
    :class:`~agent.extract.record.ExtractionError` for a malformed content tree or a deflated
    dataset whose header inflates beyond :data:`MAX_INFLATED_BYTES`.
    """
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()
    fp = io.BytesIO(data)
    if _DEFLATED in data:  # the file meta may name the deflated transfer syntax (else pydicom reads the meta once)
        preamble = read_preamble(fp, force=True)
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            body, whole = _inflate(memoryview(data)[fp.tell():], MAX_INFLATED_BYTES)
            fp = io.BytesIO(body)
            dataset = _pydicom_read_dataset(fp, False, True, stop_when=_stop_at_content)
            ds = FileDataset(fp, dataset, preamble, meta, False, True)
            ds.set_original_encoding(False, True, dataset._character_set)
            return _read_content(ds, body, fp, whole)
        fp.seek(0)
    ds = read_partial(fp, stop_when=_stop_at_content, force=True)
    return _read_content(ds, data, fp, True)


def pixel_data_offset(path: Union[str, os.PathLike]) -> int | None:
    """Where the top-level pixel data of the DICOM file at ``path`` begins, reading only the header before
    it; None without pixel data, and for a deflated dataset (its bytes cannot be cut at an element).
    The bytes before it are the object without its pixel data, as a valid DICOM file."""
    with open(path, "rb") as f:
        read_preamble(f, force=True)
        if _read_file_meta_info(f).get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            return None
        f.seek(0)
        read_partial(f, stop_when=_stop_at_pixels, force=True)  # (leaves f at the element it stopped at)
        at = f.tell()
        return at if at < os.fstat(f.fileno()).st_size else None


def dataset_pixel_data_offset(fp: BinaryIO, transfer_syntax: str) -> tuple[int | None, str]:
    """Where the top-level pixel data of the dataset at ``fp`` (as received: no preamble, no file meta)
    begins, and the dataset's SOP Class UID, reading only the header before it (a value over 1 MiB in it
    is skipped, not read).  None without pixel data, and for a deflated or unknown transfer syntax (the
    bytes cannot be cut at an element).  The bytes before it are the dataset without its pixel data."""
    syntax = UID(transfer_syntax)
    if syntax == DeflatedExplicitVRLittleEndian or not syntax.is_transfer_syntax or syntax.is_private:
        return None, ""
    start, end = fp.tell(), fp.seek(0, os.SEEK_END)
    fp.seek(start)
    header = _pydicom_read_dataset(fp, syntax.is_implicit_VR, syntax.is_little_endian, stop_when=_stop_at_pixels,
                                   defer_size=1 << 20, specific_tags=[Tag("SOPClassUID")])
    at = fp.tell() - start
    return (at if fp.tell() < end else None), str(header.get("SOPClassUID", ""))


def _inflate(deflated: memoryview, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of a deflated dataset, and whether that is all of it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(deflated, limit)
    except zlib.error as exc:
        raise ExtractionError(f"deflated dataset cannot be inflated: {exc}") from exc
    if inflater.eof:
        return body, True
    if len(body) < limit:  # all the input was used and the stream did not end
        raise ExtractionError("deflated dataset cut short (incomplete deflate stream)")
    return body, False  # (it may end exactly here: the header check below still reads what fits)


def _too_large() -> ExtractionError:
    return ExtractionError(f"deflated dataset inflates beyond {MAX_INFLATED_BYTES >> 20} MiB before its pixel "
                           "data: not read (a deflate bomb, or a header too large for this agent)")


def _read_content(ds: FileDataset, data: bytes, fp: io.BytesIO, whole: bool) -> FileDataset:
    """Read the Content Sequence at ``fp`` (where pydicom stopped) with the lean reader, and what follows
    it up to the pixel data.  ``data`` is the dataset's encoding (inflated), ``whole`` False when it is
    only the first part: what is read must then end within it."""
    start = fp.tell()
    if not whole and start >= len(data):  # pydicom read to the end of the part: the header goes on
        raise _too_large()
    implicit, little = ds.original_encoding
    if start >= len(data) or implicit is None:
        return ds  # no Content Sequence: pydicom read everything
    tag, length, vpos = srparse.element_header(data, start, implicit, little)
    if tag != srparse.CONTENT_SEQUENCE:  # the pixel data (and what follows it) is left unread
        return ds
    if length == _UNDEFINED:
        try:
            value, after = srparse.read_undefined_sequence(data, vpos, implicit, little)
        except ExtractionError:
            if not whole:
                raise _too_large() from None
            raise
    else:
        after = vpos + length
        if after > len(data):
            if not whole:
                raise _too_large()
            raise ExtractionError("Content Sequence longer than the file")
        value = data[vpos:after]
    ds[_CONTENT] = RawDataElement(_CONTENT, "SQ", len(value), value, vpos, implicit, little)
    if after < len(data):
        fp.seek(after)
        rest = _pydicom_read_dataset(fp, implicit, little, stop_when=_stop_at_pixels,
                                     parent_encoding=ds.original_character_set)
        if not whole and fp.tell() >= len(data):
            raise _too_large()
        for elem in rest.elements():
            ds[elem.tag] = elem
    elif not whole:
        raise _too_large()
    return ds
