"""What every extractor shares: warnings, numbers with units, dates, the DICOM header.

* :class:`Notes` collects a report's warnings, one line per kind of problem with a count.
* :func:`num` reads an SR NUM item into a canonical unit (exact decimal arithmetic).
* :func:`start_report` fills ids, device, study, patient and PHI from the header;
  :func:`apply_sr_context` completes them from the SR (device observer, patient
  characteristics, start of irradiation) where the header is silent.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterable, Optional

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from agent.extract import codes as C
from agent.extract import units as U
from agent.extract.record import PHI, ExtractionError, Report
from agent.extract.sr import Code, ContentItem, Index, utf8_note, utf8_undeclared, value_text


class Notes:
    """The warnings of one report: each distinct message once, with how often it occurred."""

    def __init__(self) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()

    def add(self, message: Optional[str]) -> None:
        if message:
            self._counts[message] = self._counts.get(message, 0) + 1

    def once(self, message: str) -> None:
        """A message about the whole object (how it was read), not counted."""
        self._counts.setdefault(message, 1)

    def as_list(self) -> list[str]:
        return [m if n == 1 else f"{m} ({n} times)" for m, n in self._counts.items()]


# -- numbers in SR NUM items ----------------------------------------------------------------

def decimals(items: Iterable[Optional[ContentItem]], notes: Notes) -> tuple[list[Decimal], Optional[str], str]:
    """All numbers of ``items`` as Decimals, the unit, and the label for notes."""
    values: list[Decimal] = []
    unit: Optional[str] = None
    label = ""
    for item in items:
        if item is None:
            continue
        label = label or (item.concept.meaning if item.concept else "")
        if item.numbers and item.qualifier is not None:
            why = item.qualifier.meaning or item.qualifier.value
            if not_a_value(item.qualifier):
                notes.add(f"{label}: stated as '{why}' (Numeric Value Qualifier); value omitted")
                continue
            notes.add(f"{label}: value qualified as '{why}' (not a qualifier of CID 42); kept")
        for text in item.numbers:
            d = U.parse_decimal(text)
            if d is None:
                notes.add(f"{label}: '{text}' is not a number; value omitted")
                continue
            if unit is not None and item.unit != unit:
                notes.add(f"{label}: values in different units ({unit}, {item.unit}); value omitted")
                return [], None, label
            unit = item.unit
            values.append(d)
    return values, unit, label


def not_a_value(qualifier: Code) -> bool:
    """A Numeric Value Qualifier saying that the item's number is no value (CID 42, by code or by meaning)."""
    return any(qualifier.is_(c) for c in C.NOT_A_VALUE)


def num(item: Optional[ContentItem], q: U.Quantity, notes: Notes, *, also: Iterable[Optional[ContentItem]] = (),
        multi: str = "first") -> Optional[float]:
    """The value of a NUM item (and of ``also``, repeated items of the same concept) in ``q.canonical``.

    Absent item or empty Measured Value Sequence → None.  Several values: ``multi="mean"``
    (per-pulse settings) reports their mean, ``"sum"`` (per-pulse amounts) their sum,
    ``"first"`` the first; each with a note.
    """
    exact = num_decimal(item, q, notes, also=also, multi=multi)
    return None if exact is None else float(exact)


def num_decimal(item: Optional[ContentItem], q: U.Quantity, notes: Notes, *,
                also: Iterable[Optional[ContentItem]] = (), multi: str = "first") -> Optional[Decimal]:
    values, unit, label = decimals([item, *also], notes)
    if not values:
        _stated_without_value([item, *also], notes)
        return None
    if len(values) == 1:
        value = values[0]
    elif multi == "mean":
        value = sum(values) / len(values)
        notes.add(f"{label}: one value per pulse; the event value is their mean")
    elif multi == "sum":
        value = sum(values)
        notes.add(f"{label}: one value per pulse; the event value is their sum")
    else:
        value = values[0]
        notes.add(f"{label}: {len(values)} values where DICOM allows one (e.g. variable pitch); the first is reported")
    if value < 0 and q.non_negative:
        notes.add(f"{label}: negative value {value} omitted")
        return None
    result, note = U.to_canonical(value, unit, q, label)
    notes.add(note)
    return result


def _stated_without_value(items: list[Optional[ContentItem]], notes: Notes) -> None:
    """A NUM item that is there with an empty Measured Value Sequence (the modality had no value: e.g. a DR
    detector without a DAP meter) is said, with its Numeric Value Qualifier if any, so that a missing dose is
    not taken for a reading fault."""
    present = [i for i in items if i is not None]
    if present and not any(i.numbers for i in present):
        why = next((i.qualifier.meaning for i in present if i.qualifier is not None and i.qualifier.meaning), None)
        label = present[0].concept.meaning if present[0].concept else "a value"
        notes.add(f"{label}: stated without a value" + (f" ({why})" if why else "") + "; omitted")


def count(item: Optional[ContentItem], notes: Notes) -> Optional[int]:
    """A count (events, frames, sources) as an int; a fractional count is reported as omitted."""
    value = num_decimal(item, U.NUMBER, notes)
    if value is None:
        return None
    if value != value.to_integral_value():
        notes.add(f"{item.concept.meaning if item and item.concept else 'Count'}: {value} is not a whole number; omitted")
        return None
    return int(value)


def ordered_thickness(low: Optional[float], high: Optional[float],
                      notes: Notes) -> tuple[Optional[float], Optional[float]]:
    """A filter's (minimum, maximum) thickness; a minimum stated above the maximum (Kodak/Carestream CR
    headers: 1.06 and 0.94 mm for one wedge) is the two values swapped, and is put right with a warning."""
    if low is not None and high is not None and low > high:
        notes.add("filter thickness minimum stated above its maximum; the two are swapped")
        return high, low
    return low, high


def code_meaning(item: Optional[ContentItem], table: dict[tuple[str, str], str] | None = None) -> Optional[str]:
    """A CODE item's meaning; for codes in ``table`` the standard's meaning."""
    if item is None or item.code is None:
        return None
    if table and item.code.key in table:
        return table[item.code.key]
    return item.code_meaning


def flag(item: Optional[ContentItem]) -> Optional[bool]:
    """A Yes/No CODE item as a bool."""
    if item is None or item.code is None:
        return None
    if item.code.is_(C.YES):
        return True
    if item.code.is_(C.NO):
        return False
    return None


def laterality(code_item: Optional[ContentItem] = None, *, letter: Optional[str] = None) -> Optional[str]:
    """``left`` / ``right`` / ``both`` from a Laterality code or a DICOM CS letter (L, R, B)."""
    if letter:
        return {"L": "left", "R": "right", "B": "both"}.get(letter.strip().upper()[:1])
    if code_item is None or code_item.code is None:
        return None
    c = code_item.code
    if c.is_(C.LEFT) or c.is_(C.LEFT_BREAST):
        return "left"
    if c.is_(C.RIGHT) or c.is_(C.RIGHT_BREAST):
        return "right"
    if c.is_(C.BOTH) or c.is_(C.BOTH_BREASTS):
        return "both"
    meaning = (c.meaning or "").lower()
    if "left" in meaning and "right" in meaning or "both" in meaning or "bilateral" in meaning:
        return "both"
    return "left" if "left" in meaning else "right" if "right" in meaning else None


# -- dates and times ------------------------------------------------------------------------
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")


def dt_iso(value: Optional[str], notes: Optional[Notes] = None, label: str = "DateTime") -> Optional[str]:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, any precision) → ISO 8601; invalid → None + note."""
    if not value:
        return None
    s = value.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", s):  # ISO-style dashes (seen in vendor DT values)
        s = s[:10].replace("-", "") + s[10:].replace("T", "", 1)
    s = s.replace(":", "")  # ACR-NEMA style times
    m = _DT.match(s)
    if not m:
        if notes:
            notes.add(f"{label}: '{value}' is not a DICOM date-time; omitted")
        return None
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    try:
        date(int(y), int(mo or 1), int(d or 1))
        if int(h or 0) > 23 or int(mi or 0) > 59 or int(sec or 0) > 60:
            raise ValueError
        if tz and (int(tz[3:]) > 59 or not -1200 <= int(tz[:3]) * 100 + int(tz[0] + tz[3:]) <= 1400):
            raise ValueError  # DICOM's offsets run from -1200 to +1400; '+9999' is no time zone
    except ValueError:
        if notes:
            notes.add(f"{label}: '{value}' is not a valid date-time; omitted")
        return None
    out = y + (f"-{mo}" if mo else "") + (f"-{d}" if d else "")
    if h:
        out += f"T{h}" + (f":{mi}" if mi else ":00") + (f":{sec}" if sec else "")
        if frac and frac.strip(".0"):
            out += frac
    if tz:
        out += f"{tz[:3]}:{tz[3:]}"
    return out


_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")


def utc_offset(ds: Dataset, notes: Optional[Notes] = None) -> Optional[str]:
    """Timezone Offset From UTC (0008,0201) as ISO 8601 (``-0500`` → ``-05:00``); absent or invalid → None."""
    value = hstr(ds, "TimezoneOffsetFromUTC")
    if not value:
        return None
    m = _OFFSET.match(value.strip())
    if not m or int(m.group(2)) > 14 or int(m.group(3)) > 59:
        if notes:
            notes.add(f"TimezoneOffsetFromUTC: '{value}' is not an offset (+HHMM or -HHMM); times are kept without one")
        return None
    return f"{m.group(1)}{m.group(2)}:{m.group(3)}"


def with_offset(iso: Optional[str], offset: Optional[str]) -> Optional[str]:
    """``iso`` with the object's UTC offset where it has a time of day and states no offset of its own."""
    if not iso or not offset or "T" not in iso or re.search(r"[+-]\d{2}:\d{2}$", iso):
        return iso
    return iso + offset


def apply_utc_offset(ds: Dataset, report: Any, notes: Optional[Notes] = None) -> None:
    """DICOM: Timezone Offset From UTC holds for every DA/TM of the object and every DT without its own
    offset; put it on the record's date-times (study, events, administrations)."""
    offset = utc_offset(ds, notes)
    if not offset:
        return
    report.study.datetime = with_offset(report.study.datetime, offset)
    for item in list(report.events) + list(report.administrations):
        item.datetime_started = with_offset(item.datetime_started, offset)
        if hasattr(item, "datetime_stopped"):
            item.datetime_stopped = with_offset(item.datetime_stopped, offset)


def da_tm_iso(da: Optional[str], tm: Optional[str], notes: Optional[Notes] = None, label: str = "Date") -> Optional[str]:
    """DICOM DA + TM → ISO 8601 (date only if there is no time)."""
    if not da:
        return None
    da = da.strip().replace(".", "").replace("-", "")
    tm = (tm or "").strip().replace(":", "")
    return dt_iso(da + tm, notes, label)


# -- the DICOM header -----------------------------------------------------------------------
def hstr(ds: Dataset, keyword: str, notes: Optional[Notes] = None) -> Optional[str]:
    """A header attribute as text (multi-values joined with '\\'); empty or unreadable → None.
    Latin-1 text whose bytes are UTF-8 is read as UTF-8 (:func:`~agent.extract.sr.utf8_undeclared`),
    with a warning in ``notes``."""
    tag = tag_for_keyword(keyword)
    elem = ds.get_item(tag) if tag else None  # the element as read: still encoded unless something used it
    if elem is None and tag:
        return None  # absent
    if type(elem) is RawDataElement and elem.value is not None:  # still encoded: the common case
        raw = elem.value
        if (elem.VR or _dictionary_vr(tag)) in _PLAIN_VRS and raw.isascii() and b"\\" not in raw and b"\x1b" not in raw:
            # one value of a string VR in plain ASCII reads the same in every character set:
            # the bytes are the text, which spares pydicom's conversion (most of a header read)
            return raw.decode("ascii").strip(" \x00") or None
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    text = value_text(value).strip(" \x00")
    utf8 = utf8_undeclared(text, ds.original_character_set or ())
    if utf8 is not None:
        text = utf8
        if notes is not None:
            notes.once(utf8_note(ds))
    return text or None


_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})


# the VR of a keyword's tag (always in pydicom's dictionary: the tag came from tag_for_keyword)
_dictionary_vr = lru_cache(maxsize=None)(dictionary_VR)


def hdecimals(ds: Dataset, keyword: str) -> list[Decimal]:
    """The numbers of a header attribute (DS/IS strings as stored; FD/US values exactly)."""
    text = hstr(ds, keyword)
    if text is None:
        return []
    parts = [p for p in re.split(r"[\\,]", text) if p.strip()]
    out = [U.parse_decimal(p) for p in parts]
    return [d for d in out if d is not None]


def hdecimal(ds: Dataset, keyword: str, notes: Notes) -> Optional[Decimal]:
    """The single number of a header attribute; several → the first, with a note."""
    values = hdecimals(ds, keyword)
    if not values:
        if hstr(ds, keyword) is not None:
            notes.add(f"{keyword}: '{hstr(ds, keyword)}' is not a number; omitted")
        return None
    if len(values) > 1:
        notes.add(f"{keyword}: {len(values)} values; the first is reported")
    return values[0]


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([DWMY])\s*$", re.IGNORECASE)
_AGE_UNIT = {"D": Decimal(1) / Decimal("365.25"), "W": Decimal(7) / Decimal("365.25"),
             "M": Decimal(1) / Decimal(12), "Y": Decimal(1)}


def age_years(ds: Dataset, study_date: Optional[str], notes: Notes) -> Optional[float]:
    """Patient's Age (AS, e.g. ``045Y``, ``006M``) in years, else from birth date and study date;
    coarsened by :func:`coarse_age`."""
    text = hstr(ds, "PatientAge")
    if text:
        m = _AGE.match(text)
        if m:
            return coarse_age(Decimal(m.group(1)) * _AGE_UNIT[m.group(2).upper()])
        notes.add(f"PatientAge '{text}' is not a DICOM age; not used")
    return age_between(da_tm_iso(_day_first(hstr(ds, "PatientBirthDate")), None), study_date)


def age_between(birth: Optional[str], at: Optional[str]) -> Optional[float]:
    """The age (:func:`coarse_age`) on the ISO date ``at`` of a patient born on the ISO date ``birth``."""
    if not birth or not at:
        return None
    try:
        b = date(int(birth[:4]), int(birth[5:7]), int(birth[8:10]))
        s = date(int(at[:4]), int(at[5:7]), int(at[8:10]))
    except (ValueError, IndexError):
        return None
    if s < b:
        return None
    return _from_months((s.year - b.year) * 12 + s.month - b.month - (s.day < b.day))


def coarse_age(years: Optional[float | Decimal]) -> Optional[float]:
    """An age as the record keeps it: whole years from 2 years on, whole months below (as Patient's
    Age states it).  A finer age, with the study date beside it, would give away the birth date;
    every age band (paediatric DRLs, statistics) has whole-year edges, which this keeps exact."""
    if years is None:
        return None
    return _from_months(int(Decimal(str(years)) * 12 + Decimal("1e-9")))  # completed months


def _from_months(months: int) -> float:
    return float(months // 12) if months >= 24 else float(Decimal(months) / 12)


def start_report(ds: Dataset, kind: str, modality: Optional[str], source: str, template: Optional[str],
                 notes: Notes) -> Report:
    """A report with everything the header states (ids, device, study, patient, PHI)."""
    sop_instance = hstr(ds, "SOPInstanceUID") or (hstr(ds.file_meta, "MediaStorageSOPInstanceUID")
                                                 if hasattr(ds, "file_meta") else None)
    if not sop_instance:
        raise ExtractionError("no SOP Instance UID: the object cannot be identified")
    report = Report(
        sop_instance_uid=sop_instance,
        sop_class_uid=sop_class_of(ds) or "",
        study_instance_uid=hstr(ds, "StudyInstanceUID"),
        series_instance_uid=hstr(ds, "SeriesInstanceUID"),
        kind=kind,  # type: ignore[arg-type]
        modality=modality,
        source=source,  # type: ignore[arg-type]
        template=template,
    )
    dev = report.device
    dev.manufacturer = hstr(ds, "Manufacturer", notes)
    dev.model = hstr(ds, "ManufacturerModelName", notes)
    dev.serial_number = hstr(ds, "DeviceSerialNumber")
    dev.station_name = hstr(ds, "StationName", notes)
    dev.institution_name = hstr(ds, "InstitutionName", notes)
    dev.software_versions = hstr(ds, "SoftwareVersions", notes)

    st = report.study
    st.datetime = da_tm_iso(hstr(ds, "StudyDate"), hstr(ds, "StudyTime"), notes, "Study date/time")
    st.description = hstr(ds, "StudyDescription", notes)
    st.accession_number = hstr(ds, "AccessionNumber")
    st.requested_procedure = hstr(ds, "RequestedProcedureDescription", notes)
    procedure = ds.get("ProcedureCodeSequence")
    if procedure:
        st.procedure_code = hstr(procedure[0], "CodeValue")
        st.requested_procedure = st.requested_procedure or hstr(procedure[0], "CodeMeaning", notes)

    pt = report.patient
    pt.sex = hstr(ds, "PatientSex")
    # the age on the study's date; without one (Study Date is type 2), the report's or series' date
    on = st.datetime or da_tm_iso(hstr(ds, "ContentDate") or hstr(ds, "SeriesDate") or hstr(ds, "AcquisitionDate"), None)
    pt.age_years = age_years(ds, on, notes)
    pt.weight_kg = _positive(ds, "PatientWeight", notes)
    pt.height_m = _positive(ds, "PatientSize", notes)
    if pt.height_m is not None and pt.height_m > 3:
        notes.add(f"PatientSize {pt.height_m} is not a height in metres; omitted")
        pt.height_m = None

    report.phi = patient_identity(ds)
    return report


def patient_identity(ds: Dataset) -> PHI:
    """The patient's name, id, birth date and other ids as the header states them: never printed or sent, and
    looked for wherever a modality may have copied them into free text (agent.phi)."""
    return PHI(patient_id=hstr(ds, "PatientID"), patient_name=hstr(ds, "PatientName"),
               birth_date=da_tm_iso(_day_first(hstr(ds, "PatientBirthDate")), None),
               other_patient_ids=_other_patient_ids(ds))


def _other_patient_ids(ds: Dataset) -> tuple[str, ...]:
    """The patient's other ids (a national or another hospital's number): Other Patient IDs Sequence's
    Patient IDs and the retired Other Patient IDs, each once, the patient's own id left out."""
    found = [v for v in (hstr(ds, "OtherPatientIDs") or "").split("\\")]
    try:
        items = ds.get("OtherPatientIDsSequence") or []
        found += [hstr(item, "PatientID") or "" for item in items]
    except Exception:  # a malformed sequence: its ids cannot be known
        pass
    own = (hstr(ds, "PatientID") or "").strip()
    return tuple(dict.fromkeys(v.strip() for v in found if v.strip() and v.strip() != own))


def study_date_fallback(ds: Dataset, report: Report, notes: Notes) -> None:
    """A study whose Study Date is empty (type 2; some CR/DX systems send it so) and that the report itself
    dates nowhere (start of irradiation, administration) is dated by the header's Series, Acquisition or
    Content Date and Time, with a warning, as OpenREM does: the date is needed for statistics and age bands."""
    if report.study.datetime is not None:
        return
    for date_kw, time_kw in (("SeriesDate", "SeriesTime"), ("AcquisitionDate", "AcquisitionTime"),
                             ("ContentDate", "ContentTime")):
        found = da_tm_iso(hstr(ds, date_kw), hstr(ds, time_kw), notes, date_kw)
        if found:
            report.study.datetime = found
            notes.add(f"no Study Date: the study is dated by {date_kw} and {time_kw}")
            return


def _day_first(da: Optional[str]) -> Optional[str]:
    """A birth date written against the standard as DD.MM.YYYY (31.01.1980) as DA; others as they are.
    Known, it is found and removed where a modality copied it into free text (agent.phi)."""
    found = re.fullmatch(r"\s*(\d{1,2})\.(\d{1,2})\.(\d{4})\s*", da or "")
    if found and 1 <= int(found[1]) <= 31 and 1 <= int(found[2]) <= 12:
        return f"{found[3]}{int(found[2]):02d}{int(found[1]):02d}"
    return da


def _positive(ds: Dataset, keyword: str, notes: Notes) -> Optional[float]:
    value = hdecimal(ds, keyword, notes)
    if value is None:
        return None
    if value <= 0:
        notes.add(f"{keyword} {value} is not a measurement (0 means unknown); omitted")
        return None
    return float(value)


def sop_class_of(ds: Dataset) -> Optional[str]:
    return hstr(ds, "SOPClassUID") or (hstr(ds.file_meta, "MediaStorageSOPClassUID")
                                       if getattr(ds, "file_meta", None) is not None else None)


# -- SR context: observers, patient characteristics, procedure ----------------------------
def apply_sr_context(report: Report, root: ContentItem, notes: Notes) -> None:
    """Fill what the header left empty from the SR document (TID 1002/1004, 1007, 10001/10011 rows)."""
    procedure = root.child(C.PROCEDURE_REPORTED)
    if procedure is not None:
        report.study.procedure_reported = procedure.code_meaning
    _device_observer(report, root, notes)
    _patient_characteristics(report, root, notes)
    if report.study.datetime is None:
        start = root.child(C.START_OF_IRRADIATION)
        report.study.datetime = dt_iso(start.datetime if start else None, notes, "Start of X-Ray Irradiation")
    if report.patient.age_years is None and report.phi.birth_date:
        report.patient.age_years = age_between(report.phi.birth_date, report.study.datetime)
        if report.patient.age_years is None:  # the paediatric levels cannot apply: say so
            notes.add("the patient's birth date is stated but no date of the study: the age is unknown")


def _device_observer(report: Report, root: ContentItem, notes: Notes) -> None:
    observers: list[dict] = []
    current: Optional[dict] = None
    fields = {C.DEVICE_OBSERVER_UID.key: "uid", C.DEVICE_OBSERVER_NAME.key: "name",
              C.DEVICE_OBSERVER_MANUFACTURER.key: "manufacturer", C.DEVICE_OBSERVER_MODEL.key: "model",
              C.DEVICE_OBSERVER_SERIAL.key: "serial"}
    for item in root.children:
        if item.concept is None:
            continue
        if item.is_(C.OBSERVER_TYPE):
            current = {"device": bool(item.code and item.code.is_(C.OBSERVER_DEVICE))}
            observers.append(current)
        elif item.concept.key in fields:
            if current is None or not current["device"]:
                # device attributes after a person observer (or none): they still describe a device
                device = next((o for o in observers if o["device"]), None)
                current = device or {"device": True}
                if device is None:
                    observers.append(current)
            current[fields[item.concept.key]] = item.string
    devices = [o for o in observers if o["device"]]
    if len(observers) > 1:
        notes.add(f"{len(observers)} observers in the report; the device observer is used for the device")
    if not devices:
        return
    if len(devices) > 1:
        notes.add(f"{len(devices)} device observers; the first is used")
    obs = devices[0]
    dev = report.device
    dev.device_observer_uid = obs.get("uid")
    for attr, key in (("manufacturer", "manufacturer"), ("model", "model"), ("serial_number", "serial"),
                      ("station_name", "name")):
        if getattr(dev, attr) is None and obs.get(key):
            setattr(dev, attr, obs[key])
            notes.add(f"device {attr.replace('_', ' ')} is empty in the header; taken from the SR device observer")


def _patient_characteristics(report: Report, root: ContentItem, notes: Notes) -> None:
    chars = root.child(C.PATIENT_CHARACTERISTICS)
    if chars is None:
        return
    pt = report.patient
    if pt.age_years is None:
        pt.age_years = coarse_age(num(chars.child(C.SUBJECT_AGE), U.AGE, notes))
    if pt.sex is None:
        pt.sex = subject_sex(chars.child(C.SUBJECT_SEX))
    if pt.weight_kg is None:
        pt.weight_kg = num(chars.child(C.PATIENT_WEIGHT), U.MASS, notes)
    if pt.height_m is None:
        pt.height_m = num(chars.child(C.PATIENT_HEIGHT), U.HEIGHT, notes)


# CID 7455 Sex → Patient's Sex (0010,0040): M, F or O; an unknown or undetermined sex is no value
_SEX = {("DCM", "M"): "M", ("DCM", "F"): "F", ("SCT", "248153007"): "M", ("SCT", "248152002"): "F",
        ("DCM", "U"): None, ("DCM", "121103"): None}


def subject_sex(item: Optional[ContentItem]) -> Optional[str]:
    """Subject Sex (CID 7455) as the header would state it: Male → M, Female → F, unknown or
    undetermined → nothing, any other sex of the context group (Other, Ambiguous, ...) → O."""
    if item is None or item.code is None:
        return None
    if item.code.key in _SEX:
        return _SEX[item.code.key]
    value, meaning = (item.code.value or "").strip().upper(), (item.code.meaning or "").strip().lower()
    if value in ("M", "F") or meaning in ("male", "female"):  # the same codes under another scheme
        return value if value in ("M", "F") else meaning[0].upper()
    return None if "unknown" in meaning or "undetermined" in meaning else "O"


def below(root: ContentItem, concept: Concept, notes: Notes) -> list[ContentItem]:
    """The containers of ``concept`` that are children of ``root`` (where the template puts them);
    when there are none, those at the shallowest level below it (a vendor's wrapping container), with a warning."""
    found = root.all(concept)
    if not found:
        found = Index(root).all(concept)
        if found:
            notes.add(f"{len(found)} '{concept.meaning}' found inside another container, not where the template puts them")
    return found
