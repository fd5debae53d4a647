"""Finding a patient's identity in free text, wherever text leaves the extraction.

A modality may copy the patient's name, id or birth date into any free-text attribute (study
description, protocol name, a dose-check reason).  :func:`pattern` turns a report's
:class:`~agent.extract.record.PHI` into one regular expression that finds them in the forms
people and machines write them: the name's parts, accents folded or transliterated
(``Müller``: ``Muller``, ``Mueller``), with and without hyphens and apostrophes, in every
component group of the DICOM name (``Yamada^Tarou=山田^太郎``); the birth date in year-first,
day-first and month-first order with any usual separator, two- or four-digit years and English
month names.  :func:`redact` replaces what it finds in a text; :func:`scrub_tree` replaces
whole string values in a JSON-like tree.  Used by the uplink (report bodies), the checks
(alert messages) and the console (study descriptions).

A name part is found as a word of its own, bounded by anything but a digit or a letter of a script written
with spaces (``Li`` in "Li chest", not in "Liège" or "Lisfranc"; ``Fu`` not in "Fuß"); one of three letters
or more also with a plural or genitive ``s``/``es`` (``Smiths``, ``Müllers``; ``Al`` is not found in "als").
A one-letter part is never looked for alone.  Not found: a name otherwise inflected or run into another word
(``Smithsonian``), or written in another script than the report gives it.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any, Optional

from agent.extract.common import patient_identity
from agent.extract.record import PHI

REDACTED = "[removed]"
# what a name part must not touch to be a word of its own: digits and the letters of scripts written with spaces
# between words (Latin with its accented letters, Greek, Cyrillic); ideographs and kana may touch it (山田様)
_WORD = "0-9A-Za-zÀ-ÖØ-öø-ɏͰ-ϿЀ-ӿḀ-ỿ"

_MONTHS = ("jan(?:uary)?", "f[eé]v?b?(?:ruary)?", "m(?:a|ä|ae)r(?:ch|z)?", "a(?:pr|vr)(?:il)?", "ma[iy]", "jui?ne?",
           "jui?l(?:y|let)?", "(?:aug(?:ust)?|ao[uû]t?)", "sep(?:t(?:ember)?)?", "o[ck]t(?:ober)?", "nov(?:ember)?",
           "d[eé][cz](?:ember)?")  # English, German, French
_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})
# letters that Unicode does not decompose into a base letter and an accent: one Latin letter, or two
_SINGLE = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "å": "a", "Å": "A", "ł": "l", "Ł": "L", "đ": "d",
                         "Đ": "D", "œ": "oe", "Œ": "Oe", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i"})
_DOUBLE = str.maketrans({"ø": "oe", "Ø": "Oe", "å": "aa", "Å": "Aa"})
# a name part written alone in lower case that is a particle, not a name: matched only with the rest of the name
_PARTICLES = {"de", "la", "le", "del", "della", "da", "das", "do", "dos", "di", "du", "van", "von", "der", "den", "ten",
              "ter", "zu", "zur", "y", "e", "el", "al", "bin", "ben", "af", "av"}


def pattern(phi: PHI, include_id: bool = False) -> Optional[re.Pattern[str]]:
    """One case-insensitive pattern for the patient's name parts, birth date, other ids (never sent) and
    (unless ``include_id``: the id is sent on purpose) id; None when the report carries none of them."""
    return _pattern(phi.patient_name, None if include_id else phi.patient_id, phi.birth_date,
                    tuple(phi.other_patient_ids))


def header_pattern(ds: Any) -> Optional[re.Pattern[str]]:
    """:func:`pattern` for a dataset's header: for what is said about an object no report could be made of
    (the reason it was set aside may quote its values).  None if ``ds`` is None or unreadable."""
    if ds is None:
        return None
    try:
        return pattern(patient_identity(ds))
    except Exception:  # a header that cannot be read has nothing of the patient's to quote either
        return None


@functools.lru_cache(maxsize=4)  # the checks, the uplink and the console ask for the same report's pattern in turn
def _pattern(patient_name: Optional[str], patient_id: Optional[str], birth_date: Optional[str],
             other_ids: tuple[str, ...] = ()) -> Optional[re.Pattern[str]]:
    words: set[str] = set()
    if patient_name:
        for group in patient_name.split("="):  # alphabetic, ideographic, phonetic
            whole = re.sub(r"\^+", " ", group).strip()
            words |= _forms(whole)
            components = [c for c in group.split("^") if c.strip()]
            for component in components:  # run together: Van-der Berg → Vanderberg, Anna Maria → AnnaMaria
                words |= _forms(re.sub(r"[\s,'’.-]", "", component))
            if len(components) >= 2:  # family and given name run together, in either order: SMITHJOHN, JohnSmith
                joined = [re.sub(r"[\s,'’.-]", "", c) for c in components[:2]]
                words |= _forms(joined[0] + joined[1]) | _forms(joined[1] + joined[0])
            for token in re.split(r"[\^ ,]+", group):
                if token.lower() in _PARTICLES:  # "de" alone would take "TC de Cráneo" for the patient
                    continue
                words |= _forms(token)
                words |= _forms(re.sub(r"[-'’.]", "", token))  # O'Brien → OBrien
                for part in re.split(r"[-'’.]+", token):
                    if part.lower() in _PARTICLES:
                        continue
                    if len(part) >= 2 or (part and not part.isascii()):  # a single CJK character is a name
                        words |= _forms(part)
    # a one-letter part is never looked for alone, but a single ideograph is a name
    words = {w for w in words if len(w) >= 2 or (w and not re.fullmatch(f"[{_WORD}]", w))}
    alternatives = []
    longer = sorted((w for w in words if len(w) > 2), key=len, reverse=True)
    if longer:  # with a plural or genitive ending, as names are written in text: "the Smiths", "Müllers Befund"
        alternatives.append(rf"(?<![{_WORD}])(?:{'|'.join(_spaced(w) for w in longer)})(?:e?s)?(?![{_WORD}])")
    short = sorted(w for w in words if len(w) <= 2)
    if short:  # Al, Li, Ng only as words of their own: not "als", "Lies" nor the "Fu" of "Fuß"
        alternatives.append(rf"(?<![{_WORD}])(?:{'|'.join(re.escape(w) for w in short)})(?![{_WORD}])")
    for pid in (patient_id, *other_ids):
        ids = _id_pattern(pid) if pid else None
        if ids:
            alternatives.append(ids)
    dates = _date_pattern(birth_date)
    if dates:
        alternatives.append(rf"(?<![0-9])(?:{dates})(?![0-9])")
    return re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


def redact(text: Optional[str], found: Optional[re.Pattern[str]]) -> Optional[str]:
    """``text`` with every match of ``found`` replaced by ``[removed]``."""
    if not text or found is None:
        return text
    return found.sub(REDACTED, text)


SPARED = ("pseudonym", "pseudonym_key", "datetime", "datetime_started", "datetime_stopped")


def scrub_tree(node: Any, found: re.Pattern[str], path: str = "", changed: Optional[list[str]] = None) -> list[str]:
    """Replace every string value of ``node`` (dicts and lists) in which ``found`` finds something by
    ``[removed]``; identifiers (``*_uid``) and pseudonym fields are left alone.  Returns the dotted
    keys changed (never the values).  Date-times the object states (``study.datetime``, an event's
    ``datetime_started``) are not free text and are sent as stated: a newborn examined on the day of
    birth keeps the date of the examination."""
    changed = [] if changed is None else changed
    if isinstance(node, dict):
        entries = [(k, v) for k, v in node.items() if not (k.endswith("_uid") or k in SPARED)]
    elif isinstance(node, list):
        entries = list(enumerate(node))
    else:
        return changed
    for key, value in entries:
        if isinstance(value, str):
            if found.search(value):
                node[key] = REDACTED
                changed.append(f"{path}{key}")
        else:
            scrub_tree(value, found, f"{path}{key}.", changed)
    return changed


def _forms(text: str) -> set[str]:
    """``text`` as written, with its accents dropped (ø, æ, å, ł … as o, ae, a, l and oe, aa), transliterated
    the German way, and for an ASCII name also with ae/oe/ue/ss written as ä/ö/ü/ß (Mueller: Müller)."""
    text = text.strip()
    if not text:
        return set()
    forms = {text, text.translate(_GERMAN), text.translate(_DOUBLE)}
    if text.isascii():  # (the pattern ignores case)
        forms.add(re.sub("ss", "ß", re.sub("ue", "ü", re.sub("oe", "ö", re.sub("ae", "ä", text.lower())))))
    for form in list(forms):
        forms.add("".join(c for c in unicodedata.normalize("NFKD", form.translate(_SINGLE)) if not unicodedata.combining(c)))
    return forms


_SEP = "['’ -]?"
BARE_ID_DIGITS = 5  # an id's number is found alone (and with separators inside) from this many digits, zeros aside


def _spaced(word: str) -> str:
    """A name part as a pattern that also finds it with an apostrophe, hyphen or space after its
    first, second or third letter, as such names are written: O'Connell, Mc Donald, Van Dam."""
    if len(word) < 4 or not word.isalpha():
        return re.escape(word)
    return _SEP.join(re.escape(c) for c in word[:3]) + _SEP + re.escape(word[3:])


def _id_pattern(patient_id: str) -> Optional[str]:
    """The id as written, with other separators or none between its parts and its numbers with any
    leading zeros (MRN-0778899: MRN 0778899, mrn778899), and a number alone when it has five digits or
    more besides leading zeros (778899)."""
    parts = re.findall(r"[A-Za-z]+|[0-9]+", patient_id)  # MRN0778899 has the parts MRN and 0778899 too
    if not parts or sum(len(p) for p in parts) < 4:
        return None

    def number(digits: str) -> str:
        """Leading zeros as many as written or none, and (five digits or more besides them) a space or dash anywhere
        between digits (001 234 56, 123-456), or dots, two or more (12.345.678): one dot makes a decimal value
        (DLP 1234.56), not the id; a shorter number only as written (id 0000000025 is not every 25)."""
        significant = digits.lstrip("0") or "0"
        if len(significant) < BARE_ID_DIGITS:
            return re.escape(digits)
        spaced = "[ -]?".join(re.escape(c) for c in significant)
        dotted = r"(?=[0-9]+\.[0-9]+\.[0-9])" + r"\.?".join(re.escape(c) for c in significant)
        return f"0*(?:{spaced}|{dotted})"

    def bounded(form: str, first: str, last: str) -> str:
        """The id as a token: its number may follow letters (ID00123456) but not sit inside a word (ACC123456X)
        or a longer number, nor be the whole or the decimal part of a decimal value (123456.7, 0.123456)."""
        before = r"(?<![0-9])(?<![0-9][.,])" if first.isdigit() else r"(?<![A-Za-z0-9])"
        after = r"(?![A-Za-z0-9])(?![.,][0-9])" if last.isdigit() else r"(?![A-Za-z0-9])"
        return before + form + after

    forms = {bounded(r"[\W_]*".join(number(p) if p.isdigit() else re.escape(p) for p in parts), parts[0], parts[-1])}
    forms |= {bounded(number(p), p, p) for p in parts if p.isdigit() and len(p.lstrip("0")) >= BARE_ID_DIGITS}
    return "|".join(sorted(forms, key=len, reverse=True))


def _date_pattern(birth_date: Optional[str]) -> Optional[str]:
    digits = re.sub(r"\D", "", birth_date or "")
    if len(digits) != 8:
        return None
    y4, y2, m, d = digits[:4], digits[2:4], int(digits[4:6]), int(digits[6:8])
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    mm, dd = f"0?{m}", f"0?{d}"
    month_name = _MONTHS[m - 1]
    nth = "(?:st|nd|rd|th)?"
    sep = r" ?[./‐–—-] ?"  # one separator, dashes of every kind, spaced or not
    year = f"(?:{y4}|'?{y2})"
    return "|".join([
        rf"{y4}(?P<s1>[./ -]?){mm}(?P=s1){dd}",                    # 1952-03-14, 19520314, 1952.3.14
        rf"{y4}{sep}{mm}{sep}{dd}",                                # 1952 – 03 – 14
        rf"{y2}(?P<s4>[./ -]?){mm}(?P=s4){dd}",                    # 52-03-14, 520314
        rf"{dd}(?P<s2>[./ -]){mm}(?P=s2){year}", rf"{dd}{sep}{mm}{sep}{year}",  # 14.03.1952, 14/3/52, 14 - 03 - 1952
        rf"{d:02d}{m:02d}(?:{y4}|{y2})",                           # 14031952, 140352
        rf"{mm}(?P<s3>[./ -]){dd}(?P=s3){year}", rf"{m:02d}{d:02d}(?:{y4}|{y2})",  # 03/14/1952, 3-14-52, 03141952
        rf"{dd}{nth}[ .-]*(?:of )?{month_name}[a-zäéû]*\.?[ .,'/-]*{year}",  # 14-Mar-1952, 14. März 52, 14th of March 1952
        rf"{month_name}[a-zäéû]*\.?[ ./-]*{dd}{nth}[ ,./'-]*{year}",   # Mar 14, 1952; Mar-14-1952; Mar 14 '52
        rf"{y4}[ ./-]*{month_name}[a-zäéû]*\.?[ ./-]*{dd}{nth}",       # 1952 March 14
    ])
