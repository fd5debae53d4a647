"""A lean reader for the encoded SR content tree (Content Sequence and what it nests).

Why not just pydicom: pydicom builds a full ``Dataset`` object for every item of every
sequence.  A 316-event fluoroscopy RDSR (3.3 MB, ~50,000 items) takes several seconds
that way on the two-core edge box; this reader walks the same bytes in a fraction of a
second because it keeps only the few attributes an SR content item can carry (below) and
skips everything else by its length.  pydicom still reads the file header, the character
sets and everything outside the content tree (see :mod:`agent.extract.reader`), and the
tests check that this reader and pydicom see the same tree in every corpus file.

The result is a light "item": ``dict[tag, bytes | list[item]]`` holding only
:data:`LEAVES` (raw value bytes) and :data:`SEQUENCES` (lists of items).  Malformed input
raises :class:`~agent.extract.record.ExtractionError`, never anything else.
"""
from __future__ import annotations

import struct
from typing import Union

from agent.extract.record import ExtractionError

Item = dict[int, Union[bytes, list["Item"]]]

CONTENT_SEQUENCE = 0x0040A730
SEQUENCES = frozenset({
    CONTENT_SEQUENCE,
    0x0040A043,  # Concept Name Code Sequence
    0x0040A168,  # Concept Code Sequence
    0x0040A300,  # Measured Value Sequence
    0x004008EA,  # Measurement Units Code Sequence
    0x0040A301,  # Numeric Value Qualifier Code Sequence
    0x0040A504,  # Content Template Sequence
    0x00081199,  # Referenced SOP Sequence
})
LEAVES = frozenset({
    0x0040A010,  # Relationship Type
    0x0040A040,  # Value Type
    0x0040A30A,  # Numeric Value (DS)
    0x0040A161,  # Floating Point Value (FD)
    0x0040A160,  # Text Value
    0x0040A120,  # DateTime
    0x0040A121,  # Date
    0x0040A122,  # Time
    0x0040A123,  # Person Name
    0x0040A124,  # UID
    0x0040DB00,  # Template Identifier
    0x00080100,  # Code Value
    0x00080102,  # Coding Scheme Designator
    0x00080104,  # Code Meaning
    0x00080119,  # Long Code Value
    0x00080120,  # URN Code Value
    0x00081150,  # Referenced SOP Class UID
    0x00081155,  # Referenced SOP Instance UID
})

_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_MAX_DEPTH = 100


class _Walker:
    """Reads items from ``data``; one instance per (endianness, VR mode)."""

    def __init__(self, data: bytes, implicit: bool, little: bool):
        self.data = data
        self.size = len(data)
        self.implicit = implicit
        e = "<" if little else ">"
        self.tag_len = struct.Struct(e + "HHI").unpack_from  # implicit header / item header
        self.explicit = struct.Struct(e + "HH2sH").unpack_from
        self.u32 = struct.Struct(e + "I").unpack_from
        self.little = little

    def fail(self, what: str, pos: int) -> ExtractionError:
        return ExtractionError(f"malformed SR content tree: {what} at byte {pos}")

    def header(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, length, position of the value) of the element at ``pos``."""
        if pos + 8 > self.size:
            raise self.fail("truncated element", pos)
        if self.implicit:
            g, e, length = self.tag_len(self.data, pos)
            return (g << 16) | e, None, length, pos + 8
        g, e, vr, short = self.explicit(self.data, pos)
        tag = (g << 16) | e
        if tag in (_ITEM, _ITEM_END, _SEQ_END):
            return tag, None, self.u32(self.data, pos + 4)[0], pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > self.size:
                raise self.fail("truncated element", pos)
            return tag, vr, self.u32(self.data, pos + 8)[0], pos + 12
        if b"AA" <= vr <= b"ZZ":
            return tag, vr, short, pos + 8
        # a writer switched to implicit VR inside the sequence: read it as such
        return tag, None, self.u32(self.data, pos + 4)[0], pos + 8

    def sequence(self, pos: int, end: int | None, depth: int, keep: bool) -> tuple[list[Item], int]:
        """Items of a sequence whose value starts at ``pos`` (``end`` None: undefined length)."""
        if depth > _MAX_DEPTH:
            raise self.fail("sequences nested too deeply", pos)
        items: list[Item] = []
        limit = self.size if end is None else end
        if limit > self.size:
            raise self.fail("sequence longer than the data", pos)
        data, tag_len = self.data, self.tag_len
        while pos < limit:
            if pos + 8 > self.size:
                raise self.fail("truncated item", pos)
            g, e, length = tag_len(data, pos)  # item and delimiter headers are tag + 4-byte length in every VR mode
            tag, vpos = (g << 16) | e, pos + 8
            if tag == _SEQ_END:
                if end is None:
                    return items, vpos
                pos = vpos  # stray delimiter inside a defined-length sequence: tolerate
                continue
            if tag != _ITEM:
                raise self.fail(f"expected an item, found tag {tag:08X}", pos)
            if length == _UNDEFINED:
                item, pos = self.item(vpos, None, depth, keep)
            else:
                if vpos + length > limit:
                    raise self.fail("item longer than its sequence", pos)
                item, _ = self.item(vpos, vpos + length, depth, keep)
                pos = vpos + length
            if keep:
                items.append(item)
        if end is None:
            raise self.fail("sequence without delimiter", pos)
        return items, pos

    def item(self, pos: int, end: int | None, depth: int, keep: bool) -> tuple[Item, int]:
        """The kept attributes of one item, and the position after it.

        The element header is decoded inline (not via :meth:`header`): this loop runs for
        every element of every item and dominates the reading time of large reports.
        """
        out: Item = {}
        data, size, implicit = self.data, self.size, self.implicit
        tag_len, explicit, u32 = self.tag_len, self.explicit, self.u32
        limit = size if end is None else end
        while pos < limit:
            if pos + 8 > size:
                raise self.fail("truncated element", pos)
            if implicit:
                g, e, length = tag_len(data, pos)
                tag, vr, vpos = (g << 16) | e, None, pos + 8
            else:
                g, e, vr, length = explicit(data, pos)
                tag, vpos = (g << 16) | e, pos + 8
                if g == 0xFFFE:
                    vr, length = None, u32(data, pos + 4)[0]
                elif vr in _LONG_VRS:
                    if pos + 12 > size:
                        raise self.fail("truncated element", pos)
                    length, vpos = u32(data, pos + 8)[0], pos + 12
                elif not (b"AA" <= vr <= b"ZZ"):  # switched to implicit VR inside the sequence
                    vr, length = None, u32(data, pos + 4)[0]
            if tag == _ITEM_END:
                if end is None:
                    return out, vpos
                pos = vpos
                continue
            if tag == _ITEM or tag == _SEQ_END:
                raise self.fail(f"unexpected delimiter {tag:08X}", pos)
            if length == _UNDEFINED:
                # only SQ (or UN holding an SQ, encoded implicit VR little endian) may do this
                wanted = keep and tag in SEQUENCES
                walker = self if vr != b"UN" else _Walker(data, True, True)
                seq, pos = walker.sequence(vpos, None, depth + 1, wanted)
                if wanted:
                    out[tag] = seq
                continue
            nxt = vpos + length
            if nxt > limit:
                raise self.fail(f"element {tag:08X} longer than its item", pos)
            if keep:
                if tag in LEAVES:
                    out[tag] = data[vpos:nxt]
                elif tag in SEQUENCES and (vr is None or vr == b"SQ" or vr == b"UN"):
                    walker = self if vr != b"UN" else _Walker(data, True, True)
                    out[tag], _ = walker.sequence(vpos, nxt, depth + 1, True)
            pos = nxt
        if end is None:
            raise self.fail("item without delimiter", pos)
        return out, pos


def parse_sequence(value: bytes, implicit: bool, little: bool) -> list[Item]:
    """The items of an encoded sequence value (the bytes after the element header)."""
    if isinstance(value, ParsedSequence):
        return value.items
    walker = _Walker(value, implicit, little)
    items, _ = walker.sequence(0, len(value), 0, True)
    return items


class ParsedSequence(bytes):
    """An encoded sequence value that also carries its items, already read.

    :func:`agent.extract.reader.read_dataset` has to walk an undefined-length Content
    Sequence to find where it ends; it keeps what it read on the value itself, so the
    extraction does not read the same bytes twice.  To pydicom it is plain ``bytes``.
    """

    items: list[Item]


def read_undefined_sequence(data: bytes, pos: int, implicit: bool, little: bool) -> tuple[ParsedSequence, int]:
    """An undefined-length sequence value starting at ``pos``: (its bytes with its items, position after it)."""
    walker = _Walker(data, implicit, little)
    items, after = walker.sequence(pos, None, 0, True)
    value = ParsedSequence(data[pos:after - 8])  # without the sequence delimitation item
    value.items = items
    return value, after


def element_header(data: bytes, pos: int, implicit: bool, little: bool) -> tuple[int, int, int]:
    """(tag, length, value position) of the top-level element at ``pos``."""
    tag, _, length, vpos = _Walker(data, implicit, little).header(pos)
    return tag, length, vpos
