"""The coded concepts of the dose templates (DICOM PS3.16), matched by (scheme, value).

SNOMED concepts appear in reports under their SNOMED-CT code (``SCT``, current DICOM)
or their older SNOMED-RT code (``SRT``, also written ``SNM3``); both spellings of every
concept used here are listed and :func:`key` folds them to one key.

For vendors that get a code wrong, :func:`key` falls back to the code *meaning*: an item
whose (scheme, value) is not a concept we know, but whose meaning is the meaning of one,
is read as that concept (and the extractors say so in the record's warnings).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# SNOMED-RT (SRT/SNM3) → SNOMED-CT for the concepts below (pydicom's SNOMED table agrees;
# tests/extract/test_codes.py checks that).
_SRT_TO_SCT: dict[str, str] = {}
_KNOWN: set[tuple[str, str]] = set()
_BY_MEANING: dict[str, tuple[str, str]] = {}


def _fold(meaning: str) -> str:
    return re.sub(r"[^a-z0-9]", "", meaning.lower())


@dataclass(frozen=True)
class Concept:
    meaning: str
    key: tuple[str, str]


def _register(scheme: str, value: str, meaning: str, srt: tuple[str, ...] = (), by_meaning: bool = True) -> Concept:
    k = (scheme, value)
    for old in srt:
        _SRT_TO_SCT[old] = value
    _KNOWN.add(k)
    if by_meaning:
        _BY_MEANING.setdefault(_fold(meaning), k)
    return Concept(meaning, k)


def dcm(value: str, meaning: str, by_meaning: bool = True) -> Concept:
    return _register("DCM", value, meaning, by_meaning=by_meaning)


def sct(value: str, meaning: str, *srt: str) -> Concept:
    return _register("SCT", value, meaning, srt)


def other(scheme: str, value: str, meaning: str) -> Concept:
    return _register(scheme, value, meaning, by_meaning=False)


def key(scheme: Optional[str], value: Optional[str], meaning: Optional[str] = None) -> tuple[tuple[str, str], bool]:
    """(canonical key, matched-by-meaning) for a coded entry."""
    s = (scheme or "").strip().upper()
    v = (value or "").strip()
    if s in ("SRT", "SNM3", "99SDM"):
        s, v = ("SCT", _SRT_TO_SCT[v]) if v in _SRT_TO_SCT else ("SRT", v)
    k = (s, v)
    if k in _KNOWN or not meaning:
        return k, False
    fallback = _BY_MEANING.get(_fold(meaning))
    return (fallback, True) if fallback else (k, False)


# -- report level -------------------------------------------------------------------------
XRAY_DOSE_REPORT = dcm("113701", "X-Ray Radiation Dose Report")
RADIOPHARMACEUTICAL_DOSE_REPORT = dcm("113500", "Radiopharmaceutical Radiation Dose Report")
PROCEDURE_REPORTED = dcm("121058", "Procedure reported")
ACQUISITION_DEVICE_TYPE = dcm("122142", "Acquisition Device Type")
START_OF_IRRADIATION = dcm("113809", "Start of X-Ray Irradiation")
END_OF_IRRADIATION = dcm("113810", "End of X-Ray Irradiation")
COMMENT = dcm("121106", "Comment")
PATIENT_CHARACTERISTICS = dcm("121118", "Patient Characteristics")
SUBJECT_AGE = dcm("121033", "Subject Age")
SUBJECT_SEX = dcm("121032", "Subject Sex")
PATIENT_HEIGHT = other("LN", "8302-2", "Patient Height")
PATIENT_WEIGHT = other("LN", "29463-7", "Patient Weight")

# observer context (TID 1002/1004) and device participant (TID 1021)
OBSERVER_TYPE = dcm("121005", "Observer Type")
OBSERVER_DEVICE = dcm("121007", "Device")
OBSERVER_PERSON = dcm("121006", "Person")
DEVICE_OBSERVER_UID = dcm("121012", "Device Observer UID")
DEVICE_OBSERVER_NAME = dcm("121013", "Device Observer Name")
DEVICE_OBSERVER_MANUFACTURER = dcm("121014", "Device Observer Manufacturer")
DEVICE_OBSERVER_MODEL = dcm("121015", "Device Observer Model Name")
DEVICE_OBSERVER_SERIAL = dcm("121016", "Device Observer Serial Number")
DEVICE_OBSERVER_LOCATION = dcm("121017", "Device Observer Physical Location during observation")
DEVICE_ROLE = dcm("113876", "Device Role in Procedure")
IRRADIATING_DEVICE = dcm("113859", "Irradiating Device")
DEVICE_NAME = dcm("113877", "Device Name")
DEVICE_MANUFACTURER = dcm("113878", "Device Manufacturer")
DEVICE_MODEL = dcm("113879", "Device Model Name")
DEVICE_SERIAL = dcm("113880", "Device Serial Number")

# procedures, device types, yes/no
CT_XRAY = sct("77477000", "Computed Tomography X-Ray", "P5-08000")
PROJECTION_XRAY = dcm("113704", "Projection X-Ray")
MAMMOGRAPHY = sct("71651007", "Mammography", "P5-40010")
FLUOROSCOPY = sct("44491008", "Fluoroscopy", "P5-06000")
FLUORO_GUIDED_SYSTEM = dcm("113957", "Fluoroscopy-Guided Projection Radiography System")
INTEGRATED_SYSTEM = dcm("113958", "Integrated Projection Radiography System")
CASSETTE_SYSTEM = dcm("113959", "Cassette-based Projection Radiography System")
YES = sct("373066001", "Yes", "R-0038D")
NO = sct("373067005", "No", "R-00339")

# event level, both families
IRRADIATION_EVENT_UID = dcm("113769", "Irradiation Event UID")
DATETIME_STARTED = dcm("111526", "DateTime Started")
ACQUISITION_PROTOCOL = dcm("125203", "Acquisition Protocol")
TARGET_REGION = dcm("123014", "Target Region")
KVP = dcm("113733", "KVP")
TUBE_CURRENT = dcm("113734", "X-Ray Tube Current")
EXPOSURE_TIME = dcm("113824", "Exposure Time")
EXPOSURE_TIME_OLD = dcm("113735", "Exposure Time", by_meaning=False)

# CT (TID 10011-10015)
CT_ACCUMULATED = dcm("113811", "CT Accumulated Dose Data")
TOTAL_EVENTS = dcm("113812", "Total Number of Irradiation Events")
CT_DLP_TOTAL = dcm("113813", "CT Dose Length Product Total")
CT_ACQUISITION = dcm("113819", "CT Acquisition")
CT_ACQUISITION_TYPE = dcm("113820", "CT Acquisition Type")
CT_ACQUISITION_PARAMETERS = dcm("113822", "CT Acquisition Parameters")
NUMBER_OF_SOURCES = dcm("113823", "Number of X-Ray Sources")
SCANNING_LENGTH = dcm("113825", "Scanning Length")
SINGLE_COLLIMATION = dcm("113826", "Nominal Single Collimation Width")
TOTAL_COLLIMATION = dcm("113827", "Nominal Total Collimation Width")
PITCH = dcm("113828", "Pitch Factor")
CT_DOSE = dcm("113829", "CT Dose")
MEAN_CTDIVOL = dcm("113830", "Mean CTDIvol")
CT_SOURCE_PARAMETERS = dcm("113831", "CT X-Ray Source Parameters")
SOURCE_ID = dcm("113832", "Identification of the X-Ray Source")
MAX_TUBE_CURRENT = dcm("113833", "Maximum X-Ray Tube Current")
EXPOSURE_TIME_PER_ROTATION = dcm("113834", "Exposure Time per Rotation")
PHANTOM = dcm("113835", "CTDIw Phantom Type")
DLP = dcm("113838", "DLP")
EFFECTIVE_DOSE = dcm("113839", "Effective Dose")
XRAY_MODULATION_TYPE = dcm("113842", "X-Ray Modulation Type")
SSDE = dcm("113930", "Size Specific Dose Estimation")
PROCEDURE_CONTEXT = sct("408730004", "Procedure Context", "G-C32C")
ALERT_DETAILS = dcm("113900", "Dose Check Alert Details")
DLP_ALERT_CONFIGURED = dcm("113901", "DLP Alert Value Configured")
CTDIVOL_ALERT_CONFIGURED = dcm("113902", "CTDIvol Alert Value Configured")
DLP_ALERT_VALUE = dcm("113903", "DLP Alert Value")
CTDIVOL_ALERT_VALUE = dcm("113904", "CTDIvol Alert Value")
ACCUMULATED_DLP_FORWARD = dcm("113905", "Accumulated DLP Forward Estimate")
ACCUMULATED_CTDIVOL_FORWARD = dcm("113906", "Accumulated CTDIvol Forward Estimate")
REASON_FOR_PROCEEDING = dcm("113907", "Reason For Proceeding")
NOTIFICATION_DETAILS = dcm("113908", "Dose Check Notification Details")
DLP_NOTIFICATION_CONFIGURED = dcm("113909", "DLP Notification Value Configured")
CTDIVOL_NOTIFICATION_CONFIGURED = dcm("113910", "CTDIvol Notification Value Configured")
DLP_NOTIFICATION_VALUE = dcm("113911", "DLP Notification Value")
CTDIVOL_NOTIFICATION_VALUE = dcm("113912", "CTDIvol Notification Value")
DLP_FORWARD = dcm("113913", "DLP Forward Estimate")
CTDIVOL_FORWARD = dcm("113914", "CTDIvol Forward Estimate")
PERSON_NAME = dcm("113870", "Person Name")

# projection X-ray (TID 10001-10008)
ACCUMULATED_XRAY = dcm("113702", "Accumulated X-Ray Dose Data")
ACQUISITION_PLANE = dcm("113764", "Acquisition Plane")
PLANE_A = dcm("113620", "Plane A")
PLANE_B = dcm("113621", "Plane B")
IRRADIATION_EVENT = dcm("113706", "Irradiation Event X-Ray Data")
EVENT_TYPE = dcm("113721", "Irradiation Event Type")
DAP_TOTAL = dcm("113722", "Dose Area Product Total")
DOSE_RP_TOTAL = dcm("113725", "Dose (RP) Total")
FLUORO_DAP_TOTAL = dcm("113726", "Fluoro Dose Area Product Total")
ACQUISITION_DAP_TOTAL = dcm("113727", "Acquisition Dose Area Product Total")
FLUORO_DOSE_RP_TOTAL = dcm("113728", "Fluoro Dose (RP) Total")
ACQUISITION_DOSE_RP_TOTAL = dcm("113729", "Acquisition Dose (RP) Total")
FLUORO_TIME_TOTAL = dcm("113730", "Total Fluoro Time")
FRAMES_TOTAL = dcm("113731", "Total Number of Radiographic Frames")
ACQUISITION_TIME_TOTAL = dcm("113855", "Total Acquisition Time")
DAP = dcm("122130", "Dose Area Product")
DOSE_RP = dcm("113738", "Dose (RP)")
FLUORO_MODE = dcm("113732", "Fluoro Mode")
EXPOSURE = dcm("113736", "Exposure")
DISTANCE_SOURCE_RP = dcm("113737", "Distance Source to Reference Point")
PULSE_RATE = dcm("113791", "Pulse Rate")
NUMBER_OF_PULSES = dcm("113768", "Number of Pulses")
PULSE_WIDTH = dcm("113793", "Pulse Width")
IRRADIATION_DURATION = dcm("113742", "Irradiation Duration")
AVERAGE_TUBE_CURRENT = dcm("113767", "Average X-Ray Tube Current")
FOCAL_SPOT = dcm("113766", "Focal Spot Size")
XRAY_FILTERS = dcm("113771", "X-Ray Filters")
FILTER_MATERIAL = dcm("113757", "X-Ray Filter Material")
FILTER_MIN = dcm("113758", "X-Ray Filter Thickness Minimum")
FILTER_MAX = dcm("113773", "X-Ray Filter Thickness Maximum")
POSITIONER_PRIMARY = dcm("112011", "Positioner Primary Angle")
POSITIONER_SECONDARY = dcm("112012", "Positioner Secondary Angle")
DISTANCE_SOURCE_DETECTOR = dcm("113750", "Distance Source to Detector")
DISTANCE_SOURCE_ISOCENTER = dcm("113748", "Distance Source to Isocenter")
COLLIMATED_FIELD_AREA = dcm("113790", "Collimated Field Area")
REFERENCE_POINT = dcm("113780", "Reference Point Definition")
EXPOSURE_INDEX = dcm("113845", "Exposure Index")
TARGET_EXPOSURE_INDEX = dcm("113846", "Target Exposure Index")
DEVIATION_INDEX = dcm("113847", "Deviation Index")
ACQUIRED_IMAGE = dcm("113795", "Acquired Image")
ANATOMICAL_STRUCTURE = sct("91723000", "Anatomical structure", "T-D0005")
LATERALITY = sct("272741003", "Laterality", "G-C171")
IMAGE_VIEW = dcm("111031", "Image View")
IMAGE_LATERALITY = dcm("111027", "Image Laterality")
AGD = dcm("111631", "Average Glandular Dose")
ANODE_TARGET = dcm("111632", "Anode Target Material")
COMPRESSION_THICKNESS = dcm("111633", "Compression Thickness")
HALF_VALUE_LAYER = dcm("111634", "Half Value Layer")
ENTRANCE_EXPOSURE_RP = dcm("111636", "Entrance Exposure at RP")
ACCUMULATED_AGD = dcm("111637", "Accumulated Average Glandular Dose")
LEFT = sct("7771000", "Left", "G-A101")
RIGHT = sct("24028007", "Right", "G-A100")
BOTH = sct("51440002", "Right and left", "G-A102")
UNPAIRED = sct("66459002", "Unpaired", "G-A103")
LEFT_BREAST = sct("80248007", "Left breast", "T-04030")
RIGHT_BREAST = sct("73056007", "Right breast", "T-04020")
BOTH_BREASTS = sct("63762007", "Both breasts", "T-04080")

# Philips Allura Xper private rows (scheme 99PHI-IXR-XPER) in an irradiation event
PHILIPS_NUMBER_OF_FRAMES = other("99PHI-IXR-XPER", "003", "Number of Frames")

# radiopharmaceutical (TID 10021)
RADIOPHARMACEUTICAL_ADMINISTRATION = dcm("113502", "Radiopharmaceutical Administration")
ASSOCIATED_PROCEDURE = sct("363589002", "Associated Procedure", "G-C2D0")
RADIOPHARMACEUTICAL_AGENT = sct("349358000", "Radiopharmaceutical agent", "F-61FDB", "C-B02C9")
RADIONUCLIDE = sct("89457008", "Radionuclide", "C-10072")
HALF_LIFE = sct("304283002", "Radionuclide Half Life", "R-42806")
ADMINISTRATION_EVENT_UID = dcm("113503", "Radiopharmaceutical Administration Event UID")
RADIOPHARMACEUTICAL_START = dcm("123003", "Radiopharmaceutical Start DateTime")
RADIOPHARMACEUTICAL_STOP = dcm("123004", "Radiopharmaceutical Stop DateTime")
ADMINISTERED_ACTIVITY = dcm("113507", "Administered activity")
PRE_ADMINISTRATION_ACTIVITY = dcm("113508", "Pre-Administration Measured Activity")
POST_ADMINISTRATION_ACTIVITY = dcm("113509", "Post-Administration Measured Activity")
ROUTE = sct("410675002", "Route of administration", "G-C340")
ORGAN_DOSE_INFORMATION = dcm("113517", "Organ Dose Information")
ORGAN_DOSE = dcm("113518", "Organ Dose")
FINDING_SITE = sct("363698007", "Finding Site", "G-C0E3")

# Siemens "Radiation Summary Report" (Enhanced SR, private scheme 99SMS_RADSUM)
SIEMENS_SUMMARY = other("99SMS_RADSUM", "C-10", "Radiation Summary Report")
SIEMENS_EXPOSURES = other("99SMS_RADSUM", "C-200", "Total number of exposures")
SIEMENS_FLUORO_TIME = other("99SMS_RADSUM", "C-202", "Cumulative fluoro time")
SIEMENS_DAP = other("99SMS_RADSUM", "C-204", "Cumulative dose area product")
SIEMENS_START = other("99SMS_RADSUM", "C-206", "Start of the examination")
SIEMENS_AIR_KERMA = other("99SMS_RADSUM", "C-210", "Cumulative air kerma")

# CID 42 Numeric Value Qualifier, its CID 43 failures and CID 44 unknowns: a NUM item qualified so states no
# value (its Numeric Value, if there is one at all, is a placeholder: a 0, the limit that was exceeded)
NOT_A_VALUE = tuple(dcm(v, m) for v, m in (
    ("114000", "Not a number"), ("114001", "Negative Infinity"), ("114002", "Positive Infinity"),
    ("114003", "Divide by zero"), ("114004", "Underflow"), ("114005", "Overflow"), ("114006", "Measurement failure"),
    ("114007", "Measurement not attempted"), ("114008", "Calculation failure"), ("114009", "Value out of range"),
    ("114010", "Value unknown"), ("114011", "Value indeterminate")))


def srt_to_sct() -> dict[str, str]:
    """The SNOMED-RT → SNOMED-CT pairs used here (for the tests)."""
    return dict(_SRT_TO_SCT)
