"""The SR content tree as small typed items, and the queries the extractors use.

:func:`content_tree` turns a dataset's SR document into a :class:`ContentItem` tree.  When
the Content Sequence is still encoded (as :func:`agent.extract.reader.read_dataset`
leaves it) the lean reader in :mod:`agent.extract.srparse` decodes it; when pydicom has
already decoded it, the tree is built from pydicom's items.  Both give the same tree.

Items are tolerant by design: a missing concept name, an empty Measured Value Sequence, a
value type that is not in the standard — all give an item with ``None`` in that place,
never an exception.  Concepts are matched by (scheme, value) through
:func:`agent.extract.codes.key`.
"""
from __future__ import annotations

import math
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSdecimal, DSfloat, ISfloat

from agent.extract import codes, srparse
from agent.extract.codes import Concept

_PN_DELIMITERS = {0x5E, 0x3D}  # '^', '='
_FD = 0x0040A161
_PN = 0x0040A123
_NUMERIC = 0x0040A30A
_NUMBER_TYPES = (DSfloat, DSdecimal, IS, ISfloat)


@dataclass(slots=True)
class Code:
    value: str
    scheme: str
    meaning: str
    key: tuple[str, str]
    by_meaning: bool = False  # matched a known concept by its meaning, not its code

    def is_(self, concept: Concept) -> bool:
        return self.key == concept.key


@dataclass(slots=True)
class ContentItem:
    relationship: Optional[str] = None
    value_type: Optional[str] = None
    concept: Optional[Code] = None
    code: Optional[Code] = None  # the value of a CODE item
    numbers: tuple[str, ...] = ()  # a NUM item's value(s) as stored (DS strings); () if empty
    unit: Optional[str] = None  # a NUM item's UCUM code
    qualifier: Optional[Code] = None  # Numeric Value Qualifier, e.g. "Measurement not attempted"
    text: Optional[str] = None
    datetime: Optional[str] = None
    uid: Optional[str] = None
    person: Optional[str] = None
    template: Optional[str] = None
    refs: tuple[str, ...] = ()  # Referenced SOP Class UIDs (IMAGE/COMPOSITE items)
    children: list["ContentItem"] = field(default_factory=list)

    # -- queries ---------------------------------------------------------------------------
    def is_(self, concept: Concept) -> bool:
        return self.concept is not None and self.concept.key == concept.key

    def child(self, concept: Concept) -> Optional["ContentItem"]:
        """The first direct child that is ``concept`` (:func:`preferred`)."""
        found = None
        for c in self.children:
            if c.concept is not None and c.concept.key == concept.key:
                if not c.concept.by_meaning:
                    return c
                found = found or c
        return found

    def all(self, concept: Concept) -> list["ContentItem"]:
        """Every direct child that is ``concept``, in content order (:func:`preferred`)."""
        k = concept.key
        return preferred([c for c in self.children if c.concept is not None and c.concept.key == k])

    def descendants(self) -> Iterator["ContentItem"]:
        """Every item below this one, depth first in content order."""
        stack = list(reversed(self.children))
        while stack:
            item = stack.pop()
            yield item
            stack.extend(reversed(item.children))

    @property
    def string(self) -> Optional[str]:
        """A TEXT/UIDREF/PNAME value as one string (vendors mix these up); empty → None."""
        for v in (self.text, self.uid, self.person):
            if v:
                return v
        return None

    @property
    def code_meaning(self) -> Optional[str]:
        """The meaning of a CODE value; an empty code (no value, no meaning) → None."""
        if self.code is None or not (self.code.meaning or self.code.value):
            return None
        return self.code.meaning or self.code.value


def preferred(items: list[ContentItem]) -> list[ContentItem]:
    """Items of one concept: those coded as the concept itself when there are any, else those that
    only have its meaning (a vendor code with a standard meaning does not replace the standard item)."""
    exact = [c for c in items if c.concept is not None and not c.concept.by_meaning]
    return exact or items


class Index:
    """The items below a container, by concept (built once per container).

    A concept's items are those at the shallowest level where it occurs, in content order: the
    template's own rows are the container's children, and only a value that is not there is looked
    for further down (a laterality modifying a target region, a vendor's nesting).  A vendor's
    sub-container holding the same concept (a per-frame breakdown, its own subtotals) then cannot
    stand in for the row itself.
    """

    def __init__(self, container: ContentItem):
        self.by_key: dict[tuple[str, str], list[ContentItem]] = defaultdict(list)
        depth_of: dict[tuple[str, str], int] = {}
        level, depth = container.children, 0
        while level:
            for item in level:
                if item.concept is not None and depth_of.setdefault(item.concept.key, depth) == depth:
                    self.by_key[item.concept.key].append(item)
            level, depth = [c for item in level for c in item.children], depth + 1

    def first(self, concept: Concept) -> Optional[ContentItem]:
        found = self.all(concept)
        return found[0] if found else None

    def all(self, concept: Concept) -> list[ContentItem]:
        return preferred(self.by_key.get(concept.key, []))


# -- building the tree ----------------------------------------------------------------------
_Raw = Union[bytes, str, list]


class _Decoder:
    """Turns the light items (tag → raw value / list of items) into :class:`ContentItem`."""

    def __init__(self, encodings: Sequence[str], little: bool = True):
        self.encodings = list(encodings)
        self.fd = struct.Struct("<d" if little else ">d")
        self.matched_by_meaning: set[str] = set()
        self.read_as_utf8 = False  # a text item's Latin-1 bytes were UTF-8 (see utf8_undeclared)
        self.float_preferred: set[str] = set()  # concepts whose Numeric Value lost what their Floating Point Value has
        self._codes: dict[tuple, Code] = {}  # reports repeat the same few hundred codes

    def text(self, raw: Optional[_Raw], tag: int = 0) -> Optional[str]:
        if raw is None:
            return None
        if isinstance(raw, bytes):
            if raw.isascii() and b"\x1b" not in raw:
                s = raw.decode("ascii")
            else:
                try:
                    s = decode_bytes(raw, self.encodings, _PN_DELIMITERS if tag == _PN else set())
                except Exception:  # undecodable text must not lose the dose values around it
                    s = raw.decode("latin-1")
                utf8 = utf8_undeclared(s, self.encodings)
                if utf8 is not None:
                    s, self.read_as_utf8 = utf8, True
        else:
            s = str(raw)
        s = s.strip(" \x00\r\n\t")
        return s or None

    def code(self, seq: Optional[_Raw]) -> Optional[Code]:
        if not isinstance(seq, list) or not seq:
            return None
        d = seq[0]
        raw = (d.get(0x00080100), d.get(0x00080102), d.get(0x00080104), d.get(0x00080119), d.get(0x00080120))
        try:
            cached = self._codes.get(raw)
        except TypeError:  # an unhashable (already decoded multi-valued) attribute
            cached, raw = None, None
        if cached is not None:
            return cached
        value = self.text(d.get(0x00080100)) or self.text(d.get(0x00080119)) or self.text(d.get(0x00080120)) or ""
        scheme = self.text(d.get(0x00080102)) or ""
        meaning = self.text(d.get(0x00080104)) or ""
        k, by_meaning = codes.key(scheme, value, meaning)
        if by_meaning:
            self.matched_by_meaning.add(f"({scheme},{value},'{meaning}')")
        code = Code(value, scheme, meaning, k, by_meaning)
        if raw is not None:
            self._codes[raw] = code
        return code

    def numbers(self, mv: dict, label: str = "") -> tuple[str, ...]:
        raw = mv.get(_NUMERIC)
        s = self.text(raw) if raw is not None else None
        floats = self.floats(mv.get(_FD))
        if not s:  # no Numeric Value (absent, or empty against its type 1): the Floating Point Value is the value
            return tuple(repr(v) for v in floats)
        stated = tuple(p.strip() for p in s.split("\\"))
        if floats and len(floats) == len(stated) and any(_less_precise(t, v) for t, v in zip(stated, floats)):
            # PS3.3: the Floating Point Value is required where the Numeric Value "has insufficient precision to
            # represent the value as a string" (a writer that keeps two decimals writes "0.00" for 0.000123)
            self.float_preferred.add(label or "a value")
            return tuple(repr(v) for v in floats)
        return stated

    def floats(self, fd: Optional[_Raw]) -> tuple[float, ...]:
        if isinstance(fd, bytes):
            return tuple(v[0] for v in self.fd.iter_unpack(fd[: len(fd) - len(fd) % 8]))
        if fd is not None:
            return tuple(float(v) for v in (fd if isinstance(fd, (list, tuple)) else [fd]))
        return ()

    def item(self, d: dict) -> ContentItem:
        it = ContentItem(
            relationship=self.text(d.get(0x0040A010)),
            value_type=self.text(d.get(0x0040A040)),
            concept=self.code(d.get(0x0040A043)),
            code=self.code(d.get(0x0040A168)),
            qualifier=self.code(d.get(0x0040A301)),
            text=self.text(d.get(0x0040A160)),
            uid=self.text(d.get(0x0040A124)),
            person=self.text(d.get(_PN), _PN),
        )
        mv = d.get(0x0040A300)
        if isinstance(mv, list) and mv:
            it.numbers = self.numbers(mv[0], it.concept.meaning if it.concept else "")
            unit = self.code(mv[0].get(0x004008EA))
            it.unit = unit.value if unit else None
            # PS3.3 puts the qualifier beside the Measured Value Sequence; some writers put it inside its item
            it.qualifier = it.qualifier or self.code(mv[0].get(0x0040A301))
        dt = self.text(d.get(0x0040A120))
        if dt is None and (d.get(0x0040A121) is not None or d.get(0x0040A122) is not None):
            dt = (self.text(d.get(0x0040A121)) or "") + (self.text(d.get(0x0040A122)) or "")
        it.datetime = dt
        tpl = d.get(0x0040A504)
        if isinstance(tpl, list) and tpl:
            it.template = self.text(tpl[0].get(0x0040DB00))
        refs = d.get(0x00081199)
        if isinstance(refs, list):
            it.refs = tuple(r for r in (self.text(x.get(0x00081150)) for x in refs) if r)
        children = d.get(srparse.CONTENT_SEQUENCE)
        if isinstance(children, list):
            it.children = [self.item(c) for c in children]
        return it


def _less_precise(text: str, value: float) -> bool:
    """Whether the decimal string ``text`` is a value that differs from the finite float ``value`` by more than
    a single-precision float's last digits (a rounding to fewer digits, not the same number written two
    ways: a writer computing in float32 stores 0.1 as 0.10000000149, and "0.1" is then what it stated)."""
    if not math.isfinite(value):
        return False  # NaN or infinity: not a more precise value (a Numeric Value Qualifier says what it is)
    try:
        stated = float(text)
    except ValueError:
        return True  # the Numeric Value is not a number; the Floating Point Value is
    return abs(stated - value) > 1e-6 * max(abs(stated), abs(value))


def _from_pydicom(ds: Dataset) -> dict:
    """A pydicom item as a light item; still-encoded sequences go through the lean reader."""
    out: dict = {}
    for elem in ds.elements():
        tag = int(elem.tag)
        if tag in srparse.SEQUENCES:
            out[tag] = _sequence(elem)
        elif tag in srparse.LEAVES:
            if isinstance(elem, RawDataElement):
                out[tag] = elem.value if elem.value is not None else b""
            elif tag == _FD:
                out[tag] = list(elem.value) if elem.VM > 1 else elem.value
            else:
                out[tag] = value_text(elem.value)
    return out


def _sequence(elem) -> list:
    if isinstance(elem, RawDataElement):
        if not elem.value:
            return []
        return srparse.parse_sequence(elem.value, elem.is_implicit_VR, elem.is_little_endian)
    return [_from_pydicom(item) for item in (elem.value or [])]


def value_text(value) -> str:
    """A decoded pydicom value as text; numbers (DS/IS) as the string they were stored as."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(value_text(v) for v in value)
    if isinstance(value, _NUMBER_TYPES):
        original = getattr(value, "original_string", None)
        if isinstance(original, str):
            return original
    return str(value)


def content_tree(ds: Dataset) -> tuple[ContentItem, list[str]]:
    """The document root of an SR dataset, and warnings about its reading (each code matched by meaning,
    text that was UTF-8 under another declared character set), each once."""
    encodings = convert_encodings(ds.get("SpecificCharacterSet"))
    little = ds.original_encoding[1] if ds.original_encoding[1] is not None else True
    decoder = _Decoder(encodings, little)
    root = decoder.item(_from_pydicom(ds))
    notes = [f"code {code} is not the standard code for its meaning; matched by meaning"
             for code in sorted(decoder.matched_by_meaning)]
    notes += [f"{label}: the Numeric Value has less precision than the Floating Point Value; that is read"
              for label in sorted(decoder.float_preferred)]
    if decoder.read_as_utf8:
        notes.append(utf8_note(ds))
    return root, notes


LATIN_1 = frozenset({"latin_1", "iso8859"})  # pydicom's codecs for ISO_IR 100 and the default repertoire


def utf8_undeclared(text: str, encodings: Sequence[str]) -> Optional[str]:
    """``text`` read again as UTF-8, if it was read as Latin-1 (ISO_IR 100, or no Specific Character Set)
    from bytes that are UTF-8: modalities that write UTF-8 without declaring ISO_IR 192 give 'TÃ³rax' for
    'Tórax', which no exam name matches.  Latin-1 text is practically never valid UTF-8 (that needs an
    accented capital followed by a control character or a symbol such as ° or ±).  None: leave it."""
    if text.isascii() or not set(encodings) <= LATIN_1:
        return None
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def utf8_note(ds: Dataset) -> str:
    declared = ds.get("SpecificCharacterSet")
    declared = f"declares {value_text(declared)}" if declared else "declares no Specific Character Set"
    return f"text is UTF-8 though the object {declared}: read as UTF-8"
