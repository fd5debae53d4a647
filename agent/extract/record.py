"""Typed dose records: what extraction produces and every later stage consumes.

Field names are the ``alara-edge extract`` JSON contract (README, "Extract output").
Canonical units are in the names: ``_Gym2`` (Gy·m²), ``_Gy``, ``_mGy``, ``_mGycm``,
``_s``, ``_mm``, ``_m2``, ``_kg``, ``_m``.  ``None`` means *not stated in the object*,
never zero; ``to_dict`` omits it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, Optional

Kind = Literal["ct", "projection", "radiopharmaceutical"]
Source = Literal["rdsr", "enhanced-sr", "secondary-capture", "image-header"]


def _clean(value: Any, phi: bool = False) -> Any:
    """Dataclasses → dicts without ``None`` values (recursively); NUL characters dropped from text
    (they are padding, and a PostgreSQL JSON column cannot hold them).  Fields marked ``phi`` only
    with ``phi``."""
    if isinstance(value, str):  # (pydicom's UIDs are a subclass)
        return (value.replace("\x00", "") or None) if "\x00" in value else value  # NUL padding some modalities leave
    kind = type(value)
    if kind in _PLAIN:
        return value
    plan = _FIELDS.get(kind)
    if plan is None and is_dataclass(value):
        plan = _FIELDS[kind] = [(f.name, bool(f.metadata.get("phi")), bool(f.metadata.get("omit_empty")))
                                for f in fields(value)]
    if plan is not None:
        out = {}
        for name, private, omit_empty in plan:
            if private and not phi:
                continue
            v = _clean(getattr(value, name), phi)
            if v is None or v == {} or (omit_empty and isinstance(v, list) and not v):
                continue
            out[name] = v
        return out
    if isinstance(value, dict):
        return {k: _clean(v, phi) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_clean(v, phi) for v in value]
    return value


_PLAIN = frozenset({type(None), int, float, bool})  # returned as they are
_FIELDS: dict[type, list[tuple[str, bool, bool]]] = {}  # a record class → (field, phi, omit_empty) in order


@dataclass
class Device:
    manufacturer: Optional[str] = None
    model: Optional[str] = None
    serial_number: Optional[str] = None
    station_name: Optional[str] = None
    institution_name: Optional[str] = None
    software_versions: Optional[str] = None
    device_observer_uid: Optional[str] = None


@dataclass
class Study:
    datetime: Optional[str] = None  # ISO 8601, local time as the modality states it
    description: Optional[str] = None
    accession_number: Optional[str] = None
    procedure_reported: Optional[str] = None
    requested_procedure: Optional[str] = None
    procedure_code: Optional[str] = None


@dataclass
class Patient:
    age_years: Optional[float] = None
    sex: Optional[str] = None
    weight_kg: Optional[float] = None
    height_m: Optional[float] = None


@dataclass
class PHI:
    """Directly identifying data. Kept apart so it can never slip into a dict by accident."""

    patient_id: Optional[str] = None
    patient_name: Optional[str] = None
    birth_date: Optional[str] = None
    other_patient_ids: tuple[str, ...] = field(default=(), metadata={"omit_empty": True})
    """Other Patient IDs (the sequence's and the retired attribute's): never sent, found in free text like the id."""


@dataclass
class Totals:
    ct_dlp_total_mGycm: Optional[float] = None
    ct_event_count: Optional[int] = None
    dap_total_Gym2: Optional[float] = None
    dose_rp_total_Gy: Optional[float] = None
    fluoro_dap_total_Gym2: Optional[float] = None
    fluoro_dose_rp_total_Gy: Optional[float] = None
    fluoro_time_total_s: Optional[float] = None
    acquisition_dap_total_Gym2: Optional[float] = None
    acquisition_dose_rp_total_Gy: Optional[float] = None
    acquisition_time_total_s: Optional[float] = None
    radiographic_frames_total: Optional[int] = None
    agd_total_mGy: Optional[dict[str, float]] = None  # {"left": x, "right": y}
    # radiopharmaceutical (TID 10021)
    administered_activity_MBq: Optional[float] = None


@dataclass
class XraySource:
    id: Optional[str] = None
    kvp: Optional[float] = None
    tube_current_mA: Optional[float] = None
    max_tube_current_mA: Optional[float] = None
    exposure_time_per_rotation_s: Optional[float] = None


@dataclass
class DoseCheck:
    ctdivol_notification_value_mGy: Optional[float] = None
    dlp_notification_value_mGycm: Optional[float] = None
    ctdivol_alert_value_mGy: Optional[float] = None
    dlp_alert_value_mGycm: Optional[float] = None
    accumulated_ctdivol_forward_estimate_mGy: Optional[float] = None
    accumulated_dlp_forward_estimate_mGycm: Optional[float] = None
    notification_reason: Optional[str] = None
    alert_reason: Optional[str] = None
    # TID 10015 also states whether each value was configured and the per-event forward estimates
    ctdivol_forward_estimate_mGy: Optional[float] = None
    dlp_forward_estimate_mGycm: Optional[float] = None
    ctdivol_alert_configured: Optional[bool] = None
    dlp_alert_configured: Optional[bool] = None
    ctdivol_notification_configured: Optional[bool] = None
    dlp_notification_configured: Optional[bool] = None
    person_authorizing: Optional[str] = field(default=None, metadata={"phi": True})


@dataclass
class Filter:
    material: Optional[str] = None
    min_mm: Optional[float] = None
    max_mm: Optional[float] = None


# CID 10003 Equipment Plane Identification, as events state their Acquisition Plane: a biplane system's tubes
ACQUISITION_PLANES = {"A": "Plane A", "B": "Plane B"}


@dataclass
class Event:
    irradiation_event_uid: Optional[str] = None
    datetime_started: Optional[str] = None
    event_type: Optional[str] = None
    protocol: Optional[str] = None
    target_region: Optional[str] = None
    laterality: Optional[str] = None
    # CT (TID 10013/10014/10015)
    ctdivol_mGy: Optional[float] = None
    dlp_mGycm: Optional[float] = None
    ssde_mGy: Optional[float] = None
    phantom: Optional[str] = None
    kvp: Optional[float] = None
    tube_current_mA: Optional[float] = None
    max_tube_current_mA: Optional[float] = None
    exposure_time_s: Optional[float] = None
    exposure_time_per_rotation_s: Optional[float] = None
    scanning_length_mm: Optional[float] = None
    nominal_single_collimation_mm: Optional[float] = None
    nominal_total_collimation_mm: Optional[float] = None
    pitch_factor: Optional[float] = None
    number_of_xray_sources: Optional[int] = None
    sources: list[XraySource] = field(default_factory=list, metadata={"omit_empty": True})
    dose_check: Optional[DoseCheck] = None
    # projection X-ray (TID 10003)
    dap_Gym2: Optional[float] = None
    dose_rp_Gy: Optional[float] = None
    exposure_uAs: Optional[float] = None
    pulses: Optional[float] = None
    focal_spot_mm: Optional[float] = None
    filters: list[Filter] = field(default_factory=list, metadata={"omit_empty": True})
    positioner_primary_angle_deg: Optional[float] = None
    positioner_secondary_angle_deg: Optional[float] = None
    source_to_detector_mm: Optional[float] = None
    collimated_field_area_m2: Optional[float] = None
    agd_mGy: Optional[float] = None
    entrance_exposure_at_rp_mGy: Optional[float] = None
    half_value_layer_mm: Optional[float] = None
    compression_thickness_mm: Optional[float] = None
    exposure_index: Optional[float] = None
    target_exposure_index: Optional[float] = None
    deviation_index: Optional[float] = None
    acquisition_plane: Optional[str] = None  # of a biplane system: one of ACQUISITION_PLANES' meanings
    # further values the templates carry (all optional)
    procedure_context: Optional[str] = None  # CT: e.g. "CT without contrast"
    xray_modulation_type: Optional[str] = None
    effective_dose_mSv: Optional[float] = None
    reference_point: Optional[str] = None
    fluoro_mode: Optional[str] = None
    pulse_rate_per_s: Optional[float] = None
    pulse_width_ms: Optional[float] = None
    irradiation_duration_s: Optional[float] = None
    average_tube_current_mA: Optional[float] = None
    distance_source_to_isocenter_mm: Optional[float] = None
    distance_source_to_rp_mm: Optional[float] = None
    image_view: Optional[str] = None
    anode_target_material: Optional[str] = None


@dataclass
class OrganDose:
    organ: Optional[str] = None
    laterality: Optional[str] = None
    dose_mGy: Optional[float] = None


@dataclass
class Administration:
    """One radiopharmaceutical administration (TID 10022)."""

    event_uid: Optional[str] = None
    radiopharmaceutical: Optional[str] = None
    radionuclide: Optional[str] = None
    half_life_s: Optional[float] = None
    datetime_started: Optional[str] = None
    datetime_stopped: Optional[str] = None
    activity_MBq: Optional[float] = None
    pre_administration_activity_MBq: Optional[float] = None
    post_administration_activity_MBq: Optional[float] = None
    route: Optional[str] = None
    effective_dose_mSv: Optional[float] = None
    organ_doses: list[OrganDose] = field(default_factory=list, metadata={"omit_empty": True})


@dataclass
class Report:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: Optional[str]
    series_instance_uid: Optional[str]
    kind: Kind
    modality: Optional[str]
    source: Source
    template: Optional[str] = None  # root TID as declared or inferred, e.g. "10011"
    warnings: list[str] = field(default_factory=list)
    device: Device = field(default_factory=Device)
    study: Study = field(default_factory=Study)
    patient: Patient = field(default_factory=Patient)
    totals: Totals = field(default_factory=Totals)
    events: list[Event] = field(default_factory=list)
    administrations: list[Administration] = field(default_factory=list, metadata={"omit_empty": True})
    phi: PHI = field(default_factory=PHI, metadata={"phi": True})

    def to_dict(self, include_phi: bool = False) -> dict[str, Any]:
        """The JSON contract. PHI only when asked for (``extract --include-phi``)."""
        out = _clean(self, include_phi)
        if include_phi:
            out["phi"] = _clean_phi(self.phi)
        return out

    @property
    def event_uids(self) -> list[str]:
        return [e.irradiation_event_uid for e in self.events if e.irradiation_event_uid]


def _clean_phi(phi: PHI) -> dict[str, Any]:
    values = {f.name: getattr(phi, f.name) for f in fields(phi)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None and v != ()}


class Rejected(Exception):
    """The object is well-formed DICOM but carries no dose information we handle (e.g. a non-dose SR)."""


class ExtractionError(Exception):
    """The object claims to be a dose object but cannot be read; the reason says why."""
