"""Dose values from image headers and secondary captures (no SR).

Expected values are the header attributes as dcmdump shows them, converted by hand where
the attribute's unit is not the record's: DAP (0018,115E) is in dGy·cm² (×1e-5 → Gy·m²),
Organ Dose (0040,0316) in dGy (×100 → mGy), Exposure Time in ms, Exposure in mAs.
"""
from __future__ import annotations

import io

import pydicom
import pytest

from agent.extract import extract_dataset
from agent.extract.record import Rejected
from tests.conftest import CORPUS


def test_philips_ct_dose_info_secondary_capture(report):
    rep = report("CT-SC-Philips_Brilliance16P.dcm")
    assert (rep.kind, rep.modality, rep.source) == ("ct", "CT", "secondary-capture")
    assert rep.totals.ct_dlp_total_mGycm == 1102.44609  # ELSCINT1 private DLP, exactly as stored
    assert rep.totals.ct_event_count == 4  # Total Number of Exposures
    assert [e.event_type for e in rep.events] == ["Constant Angle Acquisition"] + ["Spiral Acquisition"] * 3
    scout, pre, _, cap = rep.events
    assert (scout.kvp, scout.tube_current_mA, scout.scanning_length_mm, scout.nominal_single_collimation_mm,
            scout.nominal_total_collimation_mm) == (120.0, 50.0, 700.0, 0.75, 3.0)
    assert scout.exposure_time_s is None  # not in the item
    assert (pre.protocol, pre.tube_current_mA, pre.exposure_time_s, pre.scanning_length_mm, pre.pitch_factor,
            pre.ctdivol_mGy, pre.dlp_mGycm) == ("PRE KIDNEYS", 165.044374, 6.986, 231.0, 0.8355391387939453,
                                                7.200978719152135, 196.01)
    assert (cap.protocol, cap.tube_current_mA, cap.exposure_time_s, cap.ctdivol_mGy, cap.dlp_mGycm) == \
        ("100S C/A/P", 246.999047, 15.745, 9.315682513246966, 657.85012)
    # the object has no time stamps for its exposures: none is made up
    assert all(e.datetime_started is None and e.irradiation_event_uid is None for e in rep.events)


@pytest.mark.parametrize("stated, phantom", [("32 CM", "IEC Body Dosimetry Phantom"),
                                            ("16 CM", "IEC Head Dosimetry Phantom")])
def test_philips_dose_info_phantom_from_its_private_phantom_type(stated, phantom):
    """Philips states the CTDIvol phantom of a Dose Info entry only in ELSCINT1 (01E1,xx26)."""
    ds = pydicom.dcmread(CORPUS / "CT-SC-Philips_Brilliance16P.dcm")
    item = ds.ExposureDoseSequence[1]
    item.private_block(0x01E1, "ELSCINT1", create=True).add_new(0x26, "CS", stated)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert rep.events[1].phantom == phantom
    assert rep.events[1].ctdivol_mGy == 7.200978719152135
    assert [e.phantom for e in rep.events[2:]] == [None, None]  # the other entries state none


def test_dx_image_header(report):
    rep = report("DX-Im-GE_XR220-1.dcm")
    assert (rep.kind, rep.modality, rep.source, len(rep.events)) == ("projection", "DX", "image-header", 1)
    ev = rep.events[0]
    assert ev.dap_Gym2 == 4.1e-06  # 0.410000 dGy.cm2
    assert rep.totals.dap_total_Gym2 == 4.1e-06
    assert (ev.kvp, ev.tube_current_mA, ev.exposure_time_s, ev.exposure_uAs) == (69.639999, 189.0, 0.006, 1040.0)
    assert (ev.exposure_index, ev.target_exposure_index, ev.deviation_index) == (51.745061, 438.469173, -9.3)
    assert ev.datetime_started == "2014-09-30T14:11:33"
    assert rep.patient.age_years == 56.0


def test_cr_header_with_comma_separated_filters(report):
    rep = report("DX-Im-Carestream_DR7500-2.dcm")
    ev = rep.events[0]
    assert ev.dap_Gym2 == 0.00010157  # 10.157 dGy.cm2
    # the header states Filter Thickness Minimum 1.06\0.206 and Maximum 0.94\0.194: each minimum above its
    # maximum, which no filter can be; the record holds them the right way round and says so
    assert [(f.material, f.min_mm, f.max_mm) for f in ev.filters] == \
        [("ALUMINUM", 0.94, 1.06), ("COPPER", 0.194, 0.206)]
    assert any("minimum stated above its maximum" in w for w in rep.warnings)
    assert report("DX-Im-Carestream_DR7500-2.dcm").modality == "CR"


def test_header_values_stored_with_the_wrong_vr_are_read(report):
    ev = report("DX-Im-DRGEM.dcm").events[0]  # IS attributes holding decimals: '161.3' ms, ' 40.196' mAs
    assert (ev.exposure_time_s, ev.exposure_uAs, ev.dap_Gym2) == (0.1613, 40196.0, 0.0013518)


def test_the_more_precise_header_attribute_wins(report):
    ev = report("DX-Im-SiemensMultix.dcm").events[0]  # Exposure Time 6 ms, Exposure Time in uS 5600
    assert (ev.exposure_time_s, ev.tube_current_mA, ev.exposure_uAs, ev.dap_Gym2) == (0.0056, 303.0, 1700.0, 4.72e-06)


def test_dx_header_without_study_date(report):
    rep = report("DX-Im-Date-Missing.dcm")
    assert rep.study.datetime is None and rep.events[0].datetime_started is None
    assert rep.events[0].dap_Gym2 == 0.00011013


def test_mammography_image_header(report):
    rep = report("MG-Im-GE-SenDS-scaled.dcm")
    ev = rep.events[0]
    assert (rep.modality, ev.laterality, ev.agd_mGy, ev.entrance_exposure_at_rp_mGy, ev.compression_thickness_mm) \
        == ("MG", "left", 1.373, 5.071, 53.0)  # Organ Dose 0.01373 dGy
    assert rep.totals.agd_total_mGy == {"left": 1.373}
    assert (ev.kvp, ev.tube_current_mA, ev.exposure_time_s, ev.exposure_uAs) == (29.0, 61.0, 0.834, 51800.0)
    assert ev.dap_Gym2 is None


def test_for_processing_and_for_presentation_of_one_exposure_share_the_event(report):
    processing = report("MG-Im-GE_Seno_1_ForProcessing.dcm")
    presentation = report("MG-Im-GE_Seno_1_ForPresentation.dcm")
    other = report("MG-Im-GE_Seno_2_ForPresentation.dcm")
    assert processing.sop_instance_uid != presentation.sop_instance_uid
    assert processing.event_uids == presentation.event_uids
    assert processing.event_uids[0].startswith("2.25.")
    assert other.event_uids != presentation.event_uids
    assert processing.events[0].agd_mGy == 0.547 and other.events[0].agd_mGy == 1.409
    assert any("derived" in w for w in processing.warnings)


def test_hologic_secondary_capture_with_mammography_header(report):
    rep = report("MG-Im-Hologic-PropProj.dcm")
    ev = rep.events[0]
    assert (rep.source, rep.modality) == ("secondary-capture", "MG")
    assert (ev.laterality, ev.agd_mGy, ev.entrance_exposure_at_rp_mGy, ev.half_value_layer_mm) == \
        ("right", 0.26, 0.42, 0.479)


def test_dental_panoramic_header(report):
    rep = report("PX-Im-NewTom_Go.dcm")
    ev = rep.events[0]
    assert (rep.modality, ev.dap_Gym2, ev.kvp, ev.tube_current_mA, ev.exposure_time_s) == \
        ("PX", 8.1e-06, 85.0, 9.0, 6.8)


def test_header_event_uid_is_taken_when_present(report):
    assert report("DX-Im-Carestream_DRX.dcm").event_uids == \
        ["1.3.6.1.4.1.5962.99.1.886610039.3649959.1495535261815.5.0"]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("NM-*Im-*.dcm")))
def test_nuclear_medicine_images_are_rejected_with_a_reason(name):
    with pytest.raises(Rejected, match="no X-ray dose"):
        extract_dataset(pydicom.dcmread(CORPUS / name, stop_before_pixels=True))


def _modified(name: str, **changes) -> pydicom.Dataset:
    ds = pydicom.dcmread(CORPUS / name)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_image_with_a_zero_dap_and_no_other_dose_is_rejected_not_zero():
    ds = _modified("DX-Im-GE_XR220-1.dcm", ImageAndFluoroscopyAreaDoseProduct="0")
    with pytest.raises(Rejected, match="no radiation dose information"):
        extract_dataset(ds)


def test_image_without_dose_attributes_is_rejected():
    ds = _modified("DX-Im-GE_XR220-1.dcm", ImageAndFluoroscopyAreaDoseProduct=None)
    with pytest.raises(Rejected, match="no radiation dose information"):
        extract_dataset(ds)


def test_ct_image_is_rejected():
    ds = _modified("DX-Im-GE_XR220-1.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.2", Modality="CT")
    with pytest.raises(Rejected, match=r"CT Image Storage \(modality CT\): not a dose object"):
        extract_dataset(ds)


def test_nul_padding_in_a_header_value_is_not_in_the_record(corpus):
    """A Manufacturer of 'SIEM\\x00ENS' went into the record (and to a PostgreSQL central, which refused it)."""
    import json

    from agent.extract import extract_dataset

    ds = pydicom.dcmread(corpus / "CT-RDSR-Siemens-Multi-1.dcm")
    ds.Manufacturer = "SIEM\x00ENS"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    record = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue()))).to_dict()
    assert record["device"]["manufacturer"] == "SIEMENS" and "\x00" not in json.dumps(record)


def test_siemens_filter_named_only_by_its_filter_type(report):
    """Siemens radiography (Multix, Fluorospot Compact FD) states its added filter only as Filter Type
    'CU_0.2_MM', with no Filter Material: the filter, 0.2 mm of copper, is not lost."""
    rep = report("DX-Im-SiemensMultix.dcm")
    assert [(f.material, f.min_mm, f.max_mm) for f in rep.events[0].filters] == [("COPPER", 0.2, 0.2)]
    assert "filter read from Filter Type 'CU_0.2_MM' (no Filter Material in the header)" in rep.warnings
    # a Filter Type that names no material and thickness (WEDGE, STRIP, NONE) makes no filter
    assert extract_dataset(_modified("DX-Im-SiemensMultix.dcm", FilterType="WEDGE")).events[0].filters == []


def test_kodak_dr7500_source_to_detector_distance_is_in_decimetres(report):
    """Kodak DR 7500 writes Distance Source to Detector in dm ('11.5' for a 115 cm SID)."""
    rep = report("DX-Im-Carestream_DR7500-1.dcm")
    assert rep.events[0].source_to_detector_mm == 1150.0
    assert "DistanceSourceToDetector 11.5 is in dm on Kodak DR 7500; converted to mm" in rep.warnings
    assert report("DX-Im-SiemensMultix.dcm").events[0].source_to_detector_mm == 1800.0  # others: as stated


def test_empty_study_date_is_taken_from_the_series_date():
    """Study Date is type 2: a DX system that leaves it empty still dates its series and acquisition."""
    ds = _modified("DX-Im-GE_XR220-1.dcm", StudyDate="", StudyTime="")
    rep = extract_dataset(ds)
    assert rep.study.datetime == "2014-09-30T14:10:29"  # SeriesDate 20140930, SeriesTime 141029.000
    assert "no Study Date: the study is dated by SeriesDate and SeriesTime" in rep.warnings
    ds = _modified("DX-Im-GE_XR220-1.dcm", StudyDate="", SeriesDate="")
    assert extract_dataset(ds).study.datetime == "2014-09-30T14:11:33"  # AcquisitionDate and Time
