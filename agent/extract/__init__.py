"""Extraction: a DICOM dose object in, a typed :class:`~agent.extract.record.Report` out.

Entry points::

    read_dataset(bytes_or_path) -> pydicom Dataset   # fast reader; use it instead of dcmread
    extract_dataset(ds) -> Report                    # raises Rejected / ExtractionError
    extract_file(path) -> Report

What is read (dispatch on SOP class, then on the SR document title and template):

* X-Ray Radiation Dose SR, and Enhanced/Comprehensive SR carrying the same document
  (GE CT): CT template 10011 → :mod:`.ct`, projection template 10001 → :mod:`.projection`;
  a missing template id is inferred from the content.
* Radiopharmaceutical Radiation Dose SR (10021) → :mod:`.radiopharmaceutical`.
* Siemens' private "Radiation Summary Report" Enhanced SR → totals only.
* Secondary captures and projection images with dose attributes → :mod:`.headers`.

Anything else is :class:`Rejected` with a reason (a non-dose SR, an NM/PET image, an image
without dose attributes).  Every unexpected failure inside extraction becomes an
:class:`ExtractionError` naming it: nothing else escapes.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Union

from pydicom.dataset import Dataset

from agent.extract import codes as C
from agent.extract import ct, headers, projection, radiopharmaceutical
from agent.extract.common import Notes, apply_utc_offset, hstr, sop_class_of, study_date_fallback
from agent.extract.reader import read_dataset
from agent.extract.record import ExtractionError, Rejected, Report
from agent.extract.sr import ContentItem, content_tree

__all__ = ["extract_dataset", "extract_file", "read_dataset", "Report", "Rejected", "ExtractionError"]

RDSR = "1.2.840.10008.5.1.4.1.1.88.67"
RRDSR = "1.2.840.10008.5.1.4.1.1.88.68"
PATIENT_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.73"
ENHANCED_RDSR = "1.2.840.10008.5.1.4.1.1.88.76"  # read by its content, as an X-Ray Radiation Dose SR is
ENHANCED_TEMPLATE = "10040"  # Enhanced X-Ray Radiation Dose: read where it holds TID 10001 / 10011 content
DOSE_SR_CLASSES = (RDSR, RRDSR, ENHANCED_RDSR)  # a dose report by its class: content it lacks is an error
SR_CLASSES = {
    RDSR: "X-Ray Radiation Dose SR",
    ENHANCED_RDSR: "Enhanced X-Ray Radiation Dose SR",
    RRDSR: "Radiopharmaceutical Radiation Dose SR",
    PATIENT_DOSE_SR: "Patient Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
NM_PET_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.20": "NM Image",
    "1.2.840.10008.5.1.4.1.1.128": "PET Image",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image",
}


def extract_file(path: Union[str, os.PathLike]) -> Report:
    """Read and extract one file.  A file that cannot be opened → OSError; unreadable data → ExtractionError."""
    data = Path(path).read_bytes()
    try:
        ds = read_dataset(data)
    except ExtractionError:
        raise
    except Exception as exc:  # pydicom raises several kinds (InvalidDicomError, OSError, ValueError...)
        raise ExtractionError(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    return extract_dataset(ds)


def extract_dataset(ds: Dataset) -> Report:
    """The dose record of a dataset; Rejected if it is not a dose object we handle."""
    try:
        return _extract(ds)
    except (Rejected, ExtractionError):
        raise
    except RecursionError as exc:
        raise ExtractionError("SR content nested too deeply") from exc
    except Exception as exc:  # a defect or an input we did not foresee: say what, never crash the caller
        raise ExtractionError(f"cannot extract ({type(exc).__name__}: {exc})") from exc


def _extract(ds: Dataset) -> Report:
    sop_class = sop_class_of(ds)
    if not sop_class:
        raise ExtractionError("no SOP Class UID: not a DICOM object that can be identified")
    notes = Notes()
    if sop_class == PATIENT_DOSE_SR:
        raise Rejected("Patient Radiation Dose SR (TID 10030, estimated patient doses) is not read; "
                       "the X-Ray Radiation Dose SR it is derived from is")
    if sop_class in SR_CLASSES:
        report = _extract_sr(ds, sop_class, notes)
    elif sop_class in NM_PET_CLASSES:
        raise Rejected(f"{NM_PET_CLASSES[sop_class]}: no X-ray dose; the administered activity is reported "
                       "in the Radiopharmaceutical Radiation Dose SR, which is extracted")
    elif sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        report = headers.secondary_capture(ds, notes)
    else:
        report = headers.image(ds, "image-header", notes)
    study_date_fallback(ds, report, notes)
    apply_utc_offset(ds, report, notes)
    _drop_non_finite(report, "", notes)
    _repeated_event_uids(report, notes)
    report.warnings.extend(notes.as_list())
    return report


def _repeated_event_uids(report: Report, notes: Notes) -> None:
    """Irradiation events are told apart by their UID (a study's totals never count one twice): events
    that share one are a fault of the report, and only the first of them is kept as an event."""
    seen: dict[str, int] = {}
    for event in report.events:
        if event.irradiation_event_uid:
            seen[event.irradiation_event_uid] = seen.get(event.irradiation_event_uid, 0) + 1
    for uid, n in seen.items():
        if n > 1:
            notes.add(f"{n} irradiation events share the UID {uid}: only the first is stored as an event")


def _drop_non_finite(obj: object, path: str, notes: Notes) -> None:
    """A stated number too large for a float (DS '1e400', or one that a unit conversion takes past
    1.8e308) would be inf: not a value, and not JSON.  It is left out, with a warning.  (Walks the
    record's attributes directly: ``dataclasses.fields`` made this 7 % of a small report's extraction.)"""
    for name, value in vars(obj).items():
        if type(value) is float:
            if not math.isfinite(value):
                setattr(obj, name, None)  # an existing key: the dict's size does not change
                notes.add(f"{path}{name}: value out of range; omitted")
        elif type(value) is dict:
            bad = [k for k, v in value.items() if type(v) is float and not math.isfinite(v)]
            for key in bad:
                del value[key]
                notes.add(f"{path}{name}.{key}: value out of range; omitted")
            if bad and not value:
                setattr(obj, name, None)
        elif type(value) is list:
            for i, item in enumerate(value):
                if hasattr(item, "__dataclass_fields__"):
                    _drop_non_finite(item, f"{path}{name}[{i}].", notes)
        elif hasattr(value, "__dataclass_fields__"):
            _drop_non_finite(value, f"{path}{name}.", notes)


def _extract_sr(ds: Dataset, sop_class: str, notes: Notes) -> Report:
    root, tree_notes = content_tree(ds)
    if sop_class in DOSE_SR_CLASSES and not root.children:
        raise ExtractionError(f"{SR_CLASSES[sop_class]} with no content: the Content Sequence is missing or empty")
    for message in tree_notes:
        notes.once(message)
    source = "rdsr" if sop_class in DOSE_SR_CLASSES else "enhanced-sr"
    title = root.concept
    if root.is_(C.XRAY_DOSE_REPORT):
        template = _template(root, notes)
        if template == "10011":
            return ct.extract(ds, root, template, source, notes)
        return projection.extract(ds, root, template, source, notes)
    if root.is_(C.RADIOPHARMACEUTICAL_DOSE_REPORT):
        return radiopharmaceutical.extract(ds, root, root.template or "10021", source, notes)
    if root.is_(C.SIEMENS_SUMMARY):
        return projection.siemens_summary(ds, root, source, notes)
    described = f"'{title.meaning}' ({title.scheme} {title.value})" if title else "no document title"
    if sop_class in DOSE_SR_CLASSES:
        raise ExtractionError(f"{SR_CLASSES[sop_class]} with an unknown document title: {described}")
    raise Rejected(f"{SR_CLASSES[sop_class]} is not a radiation dose report: document title {described}"
                   + (f", modality {hstr(ds, 'Modality')}" if hstr(ds, "Modality") else ""))


def _template(root: ContentItem, notes: Notes) -> str:
    """The root template of an X-Ray Radiation Dose Report: declared, or inferred from the content."""
    has_ct = root.child(C.CT_ACCUMULATED) is not None or root.child(C.CT_ACQUISITION) is not None
    has_projection = root.child(C.ACCUMULATED_XRAY) is not None or root.child(C.IRRADIATION_EVENT) is not None
    inferred = "10011" if has_ct and not has_projection else "10001" if has_projection and not has_ct else None
    declared = root.template
    if declared == ENHANCED_TEMPLATE:
        if inferred is None:  # its own containers (TID 10041-10043): not guessed from Procedure Reported
            raise ExtractionError("Enhanced X-Ray Radiation Dose Report (TID 10040) without TID 10001 or 10011 "
                                  "content: its own content is not read by this version")
        notes.add(f"template 10040 (Enhanced X-Ray Radiation Dose) declared: read as {inferred} by its content")
        return inferred
    if inferred is None:
        procedure = root.child(C.PROCEDURE_REPORTED)
        if procedure is not None and procedure.code is not None:
            inferred = "10011" if procedure.code.is_(C.CT_XRAY) else "10001"
    if declared in ("10011", "10001"):
        if inferred and inferred != declared:
            notes.add(f"template {declared} declared but the content is template {inferred}; read as {inferred}")
            return inferred
        return declared
    if inferred is None:
        raise ExtractionError("X-Ray Radiation Dose Report with neither CT nor projection X-ray content")
    notes.add(f"no content template identifier: template {inferred} inferred from the content"
              if not declared else f"template '{declared}' is not a dose template: {inferred} inferred from the content")
    return inferred
