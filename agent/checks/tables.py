"""The schema of reference tables: one row per reference value, one rule per exam category.

A physicist writes rows like this (in the agent's configuration, or in a table file listed
in ``checks.tables``; a table file is itself a configuration file holding only these)::

    [[checks.level]]
    id = "uk2024-ct-head-ctdivol"
    kind = "DRL"                  # what the value is (see KINDS)
    modality = "CT"
    exam = "CT head"              # an exam category produced by exam matching
    patient_group = "adult"       # adult | paediatric | all, narrowed by age/weight bands
    quantity = "CTDIvol"
    value = 47
    unit = "mGy"
    scope = "per_event"           # per_event (sequence, view) | per_examination | per_procedure | per_quarter
    source = "UKHSA: National Diagnostic Reference Levels (NDRLs) from 20 November 2024"
    year = 2024
    table = "Table 1. Adult CT examinations"
    evidence = "primary"
    verified = true

    [[checks.exam]]
    exam = "CT head"
    region = "head"
    modality = "CT"
    pattern = '\\b(head|brain|skull)'   # tried on protocol, target region, study description, procedure

Units are converted and checked when the row is read: a row whose quantity or unit is not
known, or whose unit is not a unit of its quantity, is refused with a message naming it.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from functools import cached_property
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from agent.checks import units

# kind → the check it drives
KINDS = {
    "DRL": "exam_above_drl / median_above_drl",
    "local_DRL": "exam_above_drl / median_above_drl",
    "notification_value": "ct_notification_value",
    "alert_value": "ct_alert_value",
    "notification_first": "fluoro_threshold",
    "notification_subsequent_increment": "fluoro_threshold",
    "SRDL": "fluoro_threshold",
    "investigational_level_I": "staff_investigational_level",
    "investigational_level_II": "staff_investigational_level",
}
DRL_KINDS = ("DRL", "local_DRL")
FLUORO_KINDS = ("notification_first", "notification_subsequent_increment", "SRDL")
STAFF_KINDS = ("investigational_level_I", "investigational_level_II")

MODALITIES = ("CT", "DX", "RF", "XA", "MG", "NM", "PX", "occupational")
REGIONS = ("head", "neck", "torso", "extremity", "whole_body")
BODY_PARTS = ("whole_body", "lens", "extremity", "skin")

# which (quantity, scope) pairs each kind accepts
_ALLOWED = {
    "DRL": {("CTDIvol", "per_event"), ("DLP", "per_event"), ("DLP", "per_examination"), ("KAP", "per_event"),
            ("KAP", "per_examination"), ("Ka_r", "per_event"), ("Ka_r", "per_examination"),
            ("fluoro_time", "per_examination"), ("AGD", "per_event"), ("ESD", "per_event")},
    "notification_value": {("CTDIvol", "per_event"), ("DLP", "per_event")},
    "alert_value": {("CTDIvol", "per_examination"), ("DLP", "per_examination")},
    "fluoro": {(q, "per_procedure") for q in ("KAP", "Ka_r", "fluoro_time", "PSD")},
    "staff": {("dose_equivalent", "per_quarter")},
}


def _allowed(kind: str) -> set[tuple[str, str]]:
    if kind in DRL_KINDS:
        return _ALLOWED["DRL"]
    if kind in FLUORO_KINDS:
        return _ALLOWED["fluoro"]
    if kind in STAFF_KINDS:
        return _ALLOWED["staff"]
    return _ALLOWED[kind]


def _codes(value: Union[str, list[str]], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if item.lower() == "any":
            return ()
        match = next((a for a in allowed if a.lower() == item.lower()), None)
        if match is None:
            raise ValueError(f"unknown {what} {item!r} (use one of: {', '.join(allowed)}, or any)")
        out.append(match)
    return tuple(out)


def phantom_of(stated: Optional[str]) -> Optional[str]:
    """"head" for the 16-cm CTDI phantom, "body" for the 32-cm one, as a report names them; None if not stated."""
    if not stated:
        return None
    p = stated.lower()
    return "head" if "head" in p or "16" in p else "body"


class LevelRow(BaseModel):
    """One reference value with its source. ``value`` in ``unit``; compared in canonical units."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,80}$")
    kind: Literal["DRL", "local_DRL", "notification_value", "alert_value", "notification_first",
                  "notification_subsequent_increment", "SRDL", "investigational_level_I", "investigational_level_II"]
    modality: Union[str, list[str]] = "any"
    exam: Optional[str] = None
    region: Optional[Union[str, list[str]]] = None
    patient_group: Literal["adult", "paediatric", "all"] = "all"
    age_min_years: Optional[Decimal] = Field(default=None, ge=0)
    age_max_years: Optional[Decimal] = Field(default=None, gt=0)
    weight_min_kg: Optional[Decimal] = Field(default=None, ge=0)
    weight_max_kg: Optional[Decimal] = Field(default=None, gt=0)
    phantom: Optional[Literal["head", "body"]] = None
    body_part: Optional[Literal["whole_body", "lens", "extremity", "skin"]] = None
    quantity: str
    value: Decimal = Field(gt=0)
    unit: str
    scope: Literal["per_event", "per_examination", "per_procedure", "per_quarter"]
    source: str = Field(min_length=1)
    year: Optional[int] = None
    table: Optional[str] = None
    url: Optional[str] = None
    evidence: Literal["primary", "secondary", "primary+secondary", "recall", "local", "agent-default"]
    verified: bool
    clinical_indication: Optional[str] = None
    notes: Optional[str] = None

    _default: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _check(self) -> "LevelRow":
        q = units.quantity(self.quantity)  # UnitError is a ValueError: pydantic reports it on this row
        self.quantity = q.name
        self.unit = units.unit(q, self.unit)
        if (q.name, self.scope) not in _allowed(self.kind):
            pairs = ", ".join(f"{a} {b}" for a, b in sorted(_allowed(self.kind)))
            raise ValueError(f"row {self.id!r}: a {self.kind} row cannot be {q.name} {self.scope} (accepted: {pairs})")
        if self.kind in DRL_KINDS and not self.exam:
            raise ValueError(f"row {self.id!r}: a {self.kind} row names the exam category it applies to (exam = ...)")
        if self.kind in STAFF_KINDS and not self.body_part:
            raise ValueError(f"row {self.id!r}: an investigational level names its body_part ({', '.join(BODY_PARTS)})")
        for low, high, what in ((self.age_min_years, self.age_max_years, "age"),
                                (self.weight_min_kg, self.weight_max_kg, "weight")):
            if low is not None and high is not None and low >= high:
                raise ValueError(f"row {self.id!r}: {what} band is empty (minimum {low} is not below maximum {high})")
        _ = self.modalities, self.regions  # refuse unknown codes now
        return self

    # -- what the checks use (derived once) ---------------------------------------------
    @cached_property
    def threshold(self) -> Decimal:
        """``value`` in the quantity's canonical unit (exact)."""
        return units.to_canonical(self.q, self.value, self.unit)

    @cached_property
    def modalities(self) -> tuple[str, ...]:
        """The modality codes the row is for; empty = any."""
        return _codes(self.modality, MODALITIES, "modality")

    @cached_property
    def regions(self) -> tuple[str, ...]:
        return _codes(self.region, REGIONS, "region") if self.region is not None else ()

    @property
    def default(self) -> bool:
        """A built-in row: a configured row of the same kind and quantity replaces it."""
        return self._default

    @cached_property
    def q(self) -> units.Quantity:
        return units.QUANTITIES[self.quantity]

    @property
    def source_text(self) -> str:
        """The source as one line for an alert: document, year, table; "(not verified)" when not verified."""
        parts = [self.source]
        if self.year and str(self.year) not in self.source:
            parts.append(str(self.year))
        if self.table:
            parts.append(self.table)
        text = ", ".join(parts)
        return text if self.verified else f"{text} (not verified)"

    def applies_to_modality(self, modality: str) -> bool:
        return not self.modalities or modality in self.modalities

    def applies_to_place(self, exam: Optional[str], region: Optional[str]) -> int:
        """0 = does not apply; 3 = names this exam, 2 = names its region, 1 = applies to any exam."""
        if self.exam is not None:
            return 3 if exam is not None and self.exam.lower() == exam.lower() else 0
        if self.regions:
            return 2 if region in self.regions else 0
        return 1

    def applies_to_patient(self, age: Optional[float], weight: Optional[float], adult_age: Decimal) -> bool:
        """Patient group and bands. A report without an age counts as adult; bands need the value stated."""
        a = units.exact(age)
        w = units.exact(weight)
        if self.patient_group == "adult" and a is not None and a < adult_age:
            return False
        if self.patient_group == "paediatric" and (a is None or a >= adult_age):
            return False
        for value, low, high in ((a, self.age_min_years, self.age_max_years),
                                 (w, self.weight_min_kg, self.weight_max_kg)):
            if low is None and high is None:
                continue
            if value is None or (low is not None and value < low) or (high is not None and value >= high):
                return False
        return True

    def applies_to_phantom(self, phantom: Optional[str]) -> bool:
        """A row for the 16-cm (head) or 32-cm (body) CTDI phantom; an unstated phantom matches both."""
        stated = phantom_of(phantom)
        return self.phantom is None or stated is None or stated == self.phantom

    def group_label(self) -> str:
        """The patient group in words, e.g. "paediatric, age 2-6 y"."""
        bands = []
        if self.age_min_years is not None or self.age_max_years is not None:
            bands.append(f"age {_band(self.age_min_years, self.age_max_years)} y")
        if self.weight_min_kg is not None or self.weight_max_kg is not None:
            bands.append(f"weight {_band(self.weight_min_kg, self.weight_max_kg)} kg")
        return ", ".join([self.patient_group, *bands])


def _band(low: Optional[Decimal], high: Optional[Decimal]) -> str:
    if low is None:
        return f"<{high}"
    if high is None:
        return f">={low}"
    return f"{low}-{high}"


_PATTERNS = ("event_type", "pattern", "protocol", "target_region", "study_description", "procedure")


class ExamRule(BaseModel):
    """Maps a report (or one of its events) to an exam category.

    ``station``, ``modality`` and ``event_type`` restrict: each one given must hold.  The name
    patterns are alternatives: the rule matches when any one of them finds its text.  Patterns
    are regular expressions searched case-insensitively; ``procedure_code`` is a list of exact codes.
    """

    model_config = ConfigDict(extra="forbid")

    exam: str = Field(min_length=1)
    region: Optional[str] = None
    modality: Union[str, list[str]] = "any"
    station: Optional[Union[str, list[str]]] = None
    event_type: Optional[str] = None
    pattern: Optional[str] = None
    protocol: Optional[str] = None
    target_region: Optional[str] = None
    study_description: Optional[str] = None
    procedure: Optional[str] = None
    procedure_code: list[str] = []


    @field_validator("region")
    @classmethod
    def _region(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in REGIONS:
            raise ValueError(f"unknown region {v!r} (use one of: {', '.join(REGIONS)})")
        return v

    @model_validator(mode="after")
    def _check(self) -> "ExamRule":
        for name in _PATTERNS:
            try:
                re.compile(getattr(self, name) or "")
            except re.error as exc:
                raise ValueError(f"exam {self.exam!r}: {name} is not a valid regular expression: {exc}") from None
        _ = self.modalities
        if not (set(self.compiled) - {"event_type"}) and not self.procedure_code:
            raise ValueError(f"exam {self.exam!r}: give at least one of pattern, protocol, target_region, "
                             "study_description, procedure, procedure_code")
        return self

    @cached_property
    def compiled(self) -> dict[str, re.Pattern[str]]:
        """The patterns given, compiled case-insensitive."""
        return {n: re.compile(getattr(self, n), re.IGNORECASE) for n in _PATTERNS if getattr(self, n) is not None}

    @cached_property
    def modalities(self) -> tuple[str, ...]:
        return _codes(self.modality, MODALITIES, "modality")

    @cached_property
    def stations(self) -> Optional[tuple[str, ...]]:
        if self.station is None:
            return None
        return (self.station,) if isinstance(self.station, str) else tuple(self.station)

    def restricts(self, station: str, modality: str, event_type: Optional[str]) -> bool:
        """True when the station/modality/event-type restrictions hold."""
        if self.modalities and modality not in self.modalities:
            return False
        if self.stations is not None and station not in self.stations:
            return False
        rx = self.compiled.get("event_type")
        return rx is None or bool(event_type and rx.search(event_type))

    def names(self, fields: dict[str, Optional[str]]) -> bool:
        """True when one of the name patterns finds its field's text (``fields``: field → text), as written,
        with ``_`` as a space (``CAP_C+``: ``\bCAP\b``) or with accents dropped (``Tórax``), or ``pattern``
        finds the texts together (a series "Perfusion" whose target region is "Abdomen")."""
        texts = []
        for name, text in fields.items():
            if not text:
                continue
            if name == "procedure_code":
                if text.strip().lower() in (c.lower() for c in self.procedure_code):
                    return True
                continue
            texts.append(text)
            for key in (name, "pattern"):
                rx = self.compiled.get(key)
                if rx is not None and any(rx.search(t) for t in _spellings(text)):
                    return True
        rx = self.compiled.get("pattern")
        return rx is not None and len(texts) > 1 and any(rx.search(t) for t in _spellings(" ".join(texts)))


def _spellings(text: str) -> set[str]:
    """A name as written, with underscores as spaces, and with its accents dropped."""
    spaced = text.replace("_", " ")
    return {text, spaced, "".join(c for c in unicodedata.normalize("NFKD", spaced) if not unicodedata.combining(c))}
