"""CT dose reports (TID 10011): totals and events pinned to what each file states.

The expected values were read from the files with a separate pydicom walk (by code
meaning) and dcmdump, not from this extractor; they are the stored decimal strings as
floats (the files' units are the canonical ones here: mGy, mGy·cm, s, mm, kV, mA).
"""
from __future__ import annotations

import io

import pydicom
import pytest

from agent.extract import extract_dataset
from tests.conftest import CORPUS

GE_OPT = "1.3.6.1.4.1.5962.99.1.2026073515.1319176460.1479494856107."
GE_PXM = "1.3.6.1.4.1.5962.99.1.3581082065.863539667.1365085747665."
CONT = "1.3.6.1.4.1.5962.99.1.64928122.996247427.1524778350970."
MULTI = "1.3.6.1.4.1.5962.99.1.792239193.1702185591.1516915727449."
FLASH = "1.3.6.1.4.1.5962.99.1.3532166422.478333303.1485295916310."
TAP = "1.3.6.1.4.1.5962.99.1.2662687737.2058515598.1471541535737."
SPECTRUM = "1.2.276.0.7230010.3.1.3.832332.1602599594.516."
TOSH_PXM = "1.3.6.1.4.1.5962.99.1.4177303012.1711291841.1485941052900."
TOSH_DC = "1.3.6.1.4.1.5962.99.1.4226553877.745998417.1511760107541."
TOSH_MV = "1.3.6.1.4.1.5962.99.1.1042634278.1704769588.1538640959014."
NM_CT = "1.3.12.2.1107.5.1.4.11090.300000220224082917957000000"

# file: (CT Dose Length Product Total, Total Number of Irradiation Events, {event index: fields})
CT = {
    "CT-ESR-GE_Optima.dcm": (415.82, 6, {
        0: dict(irradiation_event_uid=GE_OPT + "5.0", event_type="Constant Angle Acquisition",
                target_region="Abdomen", kvp=120.0, tube_current_mA=10.0, max_tube_current_mA=10.0,
                exposure_time_s=5.6, scanning_length_mm=560.0, nominal_single_collimation_mm=1.25,
                nominal_total_collimation_mm=560.0, ctdivol_mGy=None, dlp_mGycm=None),
        3: dict(irradiation_event_uid=GE_OPT + "8.0", event_type="Constant Angle Acquisition", tube_current_mA=10.0),
        5: dict(irradiation_event_uid=GE_OPT + "10.0", event_type="Spiral Acquisition", ctdivol_mGy=5.3,
                dlp_mGycm=259.85, kvp=120.0, tube_current_mA=100.0, max_tube_current_mA=560.0, exposure_time_s=7.47,
                exposure_time_per_rotation_s=0.6, scanning_length_mm=443.75, pitch_factor=0.98,
                nominal_single_collimation_mm=0.62, nominal_total_collimation_mm=5.0),
    }),
    "CT-ESR-GE_VCT.dcm": (2002.39, 27, {
        0: dict(irradiation_event_uid=GE_OPT + "16.0", target_region="Unknown", tube_current_mA=200.0,
                exposure_time_s=4.5, scanning_length_mm=450.0),
        13: dict(irradiation_event_uid=GE_OPT + "29.0", tube_current_mA=80.0),
        26: dict(irradiation_event_uid=GE_OPT + "42.0", event_type="Sequenced Acquisition", ctdivol_mGy=32.83,
                 dlp_mGycm=16.41, tube_current_mA=70.0, exposure_time_s=4.0, exposure_time_per_rotation_s=0.4,
                 scanning_length_mm=0.0, pitch_factor=0.1),
    }),
    "CT-RDSR-GEPixelMed.dcm": (586.34, 2, {
        0: dict(irradiation_event_uid=GE_PXM + "9.0", event_type="Spiral Acquisition", target_region=None,
                ctdivol_mGy=60.41, dlp_mGycm=475.04, scanning_length_mm=78.64, phantom="IEC Head Dosimetry Phantom",
                kvp=None),
        1: dict(irradiation_event_uid=GE_PXM + "3.0", event_type="Stationary Acquisition",
                protocol="10.13 RADIOTHERAPY QA", ctdivol_mGy=222.59, dlp_mGycm=111.3, kvp=120.0,
                tube_current_mA=260.0, exposure_time_per_rotation_s=1.0, scanning_length_mm=5.0,
                nominal_single_collimation_mm=1.25, nominal_total_collimation_mm=5.0),
    }),
    "CT-RDSR-Philips_BigBore4DCT.dcm": (541.1, 1, {
        0: dict(irradiation_event_uid="1.3.6.1.4.1.5962.99.1.3978416086.606123744.1563051577302.4.0",
                event_type="Spiral Acquisition", protocol="4DCT /PHYSICS", target_region=None, ctdivol_mGy=23.7,
                dlp_mGycm=541.1, kvp=120.0, tube_current_mA=34.0, exposure_time_s=11912.0,
                exposure_time_per_rotation_s=0.5, scanning_length_mm=212.0, pitch_factor=0.042,
                nominal_single_collimation_mm=1.5, nominal_total_collimation_mm=24.0),
    }),
    "CT-RDSR-Siemens-Continued-1.dcm": (60.17, 2, {
        0: dict(irradiation_event_uid=CONT + "6.0", protocol="Topogram", target_region="Chest", ctdivol_mGy=0.14,
                dlp_mGycm=5.05, kvp=120.0, tube_current_mA=35.0, exposure_time_s=3.72, scanning_length_mm=360.0),
        1: dict(irradiation_event_uid=CONT + "7.0", event_type="Spiral Acquisition", protocol="Thorax",
                ctdivol_mGy=2.03, dlp_mGycm=55.12, tube_current_mA=72.0, max_tube_current_mA=225.0,
                exposure_time_s=3.33, scanning_length_mm=306.0, pitch_factor=1.2, nominal_total_collimation_mm=38.4),
    }),
    "CT-RDSR-Siemens-Continued-2.dcm": (56.44, 2, {
        0: dict(irradiation_event_uid=CONT + "11.0", ctdivol_mGy=0.14, dlp_mGycm=4.62, exposure_time_s=3.43,
                scanning_length_mm=330.0),
        1: dict(irradiation_event_uid=CONT + "12.0", ctdivol_mGy=2.22, dlp_mGycm=51.82, tube_current_mA=79.0,
                max_tube_current_mA=194.0, exposure_time_s=2.89, scanning_length_mm=266.0, pitch_factor=1.2),
    }),
    "CT-RDSR-Siemens-Multi-1.dcm": (7.46, 1, {
        0: dict(irradiation_event_uid=MULTI + "4.0", ctdivol_mGy=0.15, dlp_mGycm=7.46, tube_current_mA=34.0,
                max_tube_current_mA=35.0, exposure_time_s=5.28, scanning_length_mm=514.0),
    }),
    "CT-RDSR-Siemens-Multi-2.dcm": (77.27, 2, {
        0: dict(irradiation_event_uid=MULTI + "4.0", dlp_mGycm=7.46),
        1: dict(irradiation_event_uid=MULTI + "5.0", protocol="4DCT", ctdivol_mGy=8.13, dlp_mGycm=69.81,
                tube_current_mA=22.0, max_tube_current_mA=28.0, exposure_time_s=26.91, pitch_factor=0.09,
                scanning_length_mm=92.0, nominal_total_collimation_mm=19.2),
    }),
    "CT-RDSR-Siemens-Multi-3.dcm": (236.09, 3, {
        0: dict(irradiation_event_uid=MULTI + "4.0", dlp_mGycm=7.46),
        1: dict(irradiation_event_uid=MULTI + "5.0", dlp_mGycm=69.81),
        2: dict(irradiation_event_uid=MULTI + "8.0", ctdivol_mGy=7.02, dlp_mGycm=158.82, tube_current_mA=19.0,
                exposure_time_s=69.85, scanning_length_mm=238.0),
    }),
    "CT-RDSR-Siemens_Flash-QA-DS.dcm": (1590.0, 9, {
        0: dict(irradiation_event_uid=FLASH + "4.0", event_type="Stationary Acquisition", protocol="DE_laser align",
                target_region="Abdomen", ctdivol_mGy=15.45, dlp_mGycm=29.67, exposure_time_s=0.5,
                scanning_length_mm=19.0, nominal_total_collimation_mm=19.2, number_of_xray_sources=2,
                kvp=None, tube_current_mA=None, exposure_time_per_rotation_s=0.5),
        4: dict(irradiation_event_uid=FLASH + "8.0", protocol="DS 100kV", target_region="Heart", ctdivol_mGy=13.17,
                dlp_mGycm=50.58, kvp=100.0, tube_current_mA=None, max_tube_current_mA=515.0,
                exposure_time_per_rotation_s=None),
        8: dict(irradiation_event_uid=FLASH + "12.0", event_type="Spiral Acquisition", protocol="DS_hel p 0.23",
                ctdivol_mGy=29.67, dlp_mGycm=369.34, kvp=120.0, exposure_time_per_rotation_s=0.285,
                pitch_factor=0.19, exposure_time_s=5.99, scanning_length_mm=151.0),
    }),
    "CT-RDSR-Siemens_Flash-TAP-SS.dcm": (724.52, 4, {
        0: dict(irradiation_event_uid=TAP + "4.0", target_region="Entire body", ctdivol_mGy=0.14, dlp_mGycm=11.51,
                exposure_time_s=8.37, scanning_length_mm=821.0),
        2: dict(irradiation_event_uid=TAP + "6.0", protocol="Monitoring", ctdivol_mGy=3.61, dlp_mGycm=3.61,
                tube_current_mA=39.0, max_tube_current_mA=40.0, exposure_time_s=1.5, scanning_length_mm=10.0,
                nominal_single_collimation_mm=10.0, nominal_total_collimation_mm=10.0),
        3: dict(irradiation_event_uid=TAP + "7.0", protocol="TAP", ctdivol_mGy=9.91, dlp_mGycm=708.2,
                tube_current_mA=176.0, max_tube_current_mA=560.0, exposure_time_s=16.01, pitch_factor=0.6,
                scanning_length_mm=737.0),
    }),
    "CT-RDSR-SpectrumDynamics.dcm": (187.339, 5, {
        0: dict(irradiation_event_uid=SPECTRUM + "1229", event_type="Constant Angle Acquisition", protocol="Daily QA",
                target_region="Other", kvp=120.0, tube_current_mA=60.2354, max_tube_current_mA=60.0,
                exposure_time_s=3.183, scanning_length_mm=318.3, nominal_single_collimation_mm=0.625,
                nominal_total_collimation_mm=0.0),
        2: dict(irradiation_event_uid=SPECTRUM + "1481", ctdivol_mGy=12.7189, dlp_mGycm=25.4378,
                tube_current_mA=199.237, exposure_time_s=2.008, exposure_time_per_rotation_s=1.0,
                scanning_length_mm=20.0, nominal_total_collimation_mm=10.0),
        4: dict(irradiation_event_uid=SPECTRUM + "1733", event_type="Free Acquisition", ctdivol_mGy=16.2604,
                dlp_mGycm=71.5456, tube_current_mA=250.681, max_tube_current_mA=250.0, exposure_time_s=3.519,
                exposure_time_per_rotation_s=0.8, scanning_length_mm=44.0, pitch_factor=1.0),
    }),
    "CT-RDSR-ToshibaPixelMed.dcm": (349.7, 3, {
        0: dict(irradiation_event_uid=TOSH_PXM + "3.0", target_region="Chest, Abdomen and Pelvis", ctdivol_mGy=None),
        1: dict(irradiation_event_uid=TOSH_PXM + "4.0", ctdivol_mGy=25.4, dlp_mGycm=208.5, scanning_length_mm=82.09),
        2: dict(irradiation_event_uid=TOSH_PXM + "5.0", ctdivol_mGy=24.7, dlp_mGycm=141.2, scanning_length_mm=57.17),
    }),
    "CT-RDSR-Toshiba_DoseCheck.dcm": (502.4, 2, {
        0: dict(irradiation_event_uid=TOSH_DC + "4.0", protocol="Abdomen Routine ZC (NR)", ctdivol_mGy=5.3,
                dlp_mGycm=251.2, kvp=120.0, tube_current_mA=150.0, exposure_time_s=7.49,
                exposure_time_per_rotation_s=0.5, scanning_length_mm=487.0, pitch_factor=0.813,
                nominal_single_collimation_mm=5.0, nominal_total_collimation_mm=40.0),
        1: dict(irradiation_event_uid=TOSH_DC + "5.0", ctdivol_mGy=5.3, dlp_mGycm=251.2),
    }),
    "CT-RDSR-Toshiba_MultiValSD.dcm": (136.9, 3, {
        0: dict(irradiation_event_uid=TOSH_MV + "4.0", target_region=None, tube_current_mA=30.0, exposure_time_s=3.21,
                scanning_length_mm=0.0),
        1: dict(irradiation_event_uid=TOSH_MV + "5.0", tube_current_mA=100.0, exposure_time_s=3.2),
        2: dict(irradiation_event_uid=TOSH_MV + "6.0", protocol="100sec Neck & Chest +C (vHP)", ctdivol_mGy=3.2,
                dlp_mGycm=136.9, tube_current_mA=95.0, max_tube_current_mA=140.0, exposure_time_s=6.63,
                pitch_factor=0.813, scanning_length_mm=366.0, nominal_single_collimation_mm=3.0),
    }),
    "NM-CT-RDSR-Siemens.dcm": (667.72, 2, {
        0: dict(irradiation_event_uid=NM_CT + "15", protocol="Topogram", target_region="Entire body",
                ctdivol_mGy=0.04, dlp_mGycm=6.58, kvp=100.0, tube_current_mA=35.0, exposure_time_s=8.26,
                scanning_length_mm=1499.0),
        1: dict(irradiation_event_uid=NM_CT + "16", protocol="AC_CT_Body", ctdivol_mGy=4.59, dlp_mGycm=661.14,
                kvp=120.0, tube_current_mA=113.0, max_tube_current_mA=481.0, exposure_time_s=42.3, pitch_factor=0.9,
                scanning_length_mm=1455.0, nominal_single_collimation_mm=1.2, nominal_total_collimation_mm=19.2),
    }),
}


@pytest.mark.parametrize("name", sorted(CT))
def test_ct_totals_are_the_stated_ones(report, name):
    dlp_total, count, _ = CT[name]
    rep = report(name)
    assert (rep.kind, rep.modality) == ("ct", "CT")
    assert rep.totals.ct_dlp_total_mGycm == dlp_total
    assert rep.totals.ct_event_count == count
    assert len(rep.events) == count


@pytest.mark.parametrize("name", sorted(CT))
def test_ct_events_first_middle_last_are_the_stated_ones(report, name):
    rep = report(name)
    for index, expected in CT[name][2].items():
        ev = rep.events[index]
        actual = {field: getattr(ev, field) for field in expected}
        assert actual == expected, f"{name} event {index}"


def test_ge_dose_reports_sent_as_enhanced_sr_are_read(report):
    for name in ("CT-ESR-GE_Optima.dcm", "CT-ESR-GE_VCT.dcm"):
        rep = report(name)
        assert rep.source == "enhanced-sr" and rep.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.22"
        assert rep.template == "10011"
    # GE writes "X-ray sources" (no braces) as the unit of a count: the count is kept
    assert report("CT-ESR-GE_Optima.dcm").events[0].number_of_xray_sources == 1


def test_dual_source_ct_has_one_set_of_parameters_per_tube(report):
    ev = report("CT-RDSR-Siemens_Flash-QA-DS.dcm").events[0]
    assert ev.number_of_xray_sources == 2
    assert [(s.id, s.kvp, s.tube_current_mA, s.max_tube_current_mA, s.exposure_time_per_rotation_s)
            for s in ev.sources] == [("A", 100.0, 399.0, 400.0, 0.5), ("B", 140.0, 308.0, 310.0, 0.5)]
    # tubes at different kV: no single event-level kV is invented
    assert ev.kvp is None and ev.tube_current_mA is None
    ev4 = report("CT-RDSR-Siemens_Flash-QA-DS.dcm").events[4]
    assert [(s.id, s.tube_current_mA, s.exposure_time_per_rotation_s) for s in ev4.sources] == \
        [("A", 512.0, 0.238), ("B", 511.0, 0.151)]


def test_empty_target_region_is_absent_not_empty_text(report):
    rep = report("CT-RDSR-Philips_BigBore4DCT.dcm")
    assert rep.events[0].target_region is None
    assert "target_region" not in rep.to_dict()["events"][0]


def test_toshiba_dose_check_alert_values_and_forward_estimates(report):
    first, second = report("CT-RDSR-Toshiba_DoseCheck.dcm").events
    assert first.dose_check.dlp_alert_value_mGycm == 100.0
    assert first.dose_check.ctdivol_alert_value_mGy == 10.0
    assert first.dose_check.accumulated_dlp_forward_estimate_mGycm == 251.2
    assert first.dose_check.accumulated_ctdivol_forward_estimate_mGy is None  # not stated for the first scan
    assert second.dose_check.accumulated_dlp_forward_estimate_mGycm == 502.4
    assert second.dose_check.accumulated_ctdivol_forward_estimate_mGy == 10.6
    assert (second.dose_check.dlp_alert_configured, second.dose_check.ctdivol_alert_configured) == (True, True)
    assert (second.dose_check.dlp_notification_configured, second.dose_check.ctdivol_notification_configured) == \
        (False, False)
    assert second.dose_check.dlp_notification_value_mGycm is None
    # the person who authorised proceeding is identifying: kept on the record, never in its JSON
    assert first.dose_check.person_authorizing == "Luuk"
    assert "person_authorizing" not in str(report("CT-RDSR-Toshiba_DoseCheck.dcm").to_dict())
    # ...unless asked for, with the patient's identity (extract --include-phi)
    shown = report("CT-RDSR-Toshiba_DoseCheck.dcm").to_dict(include_phi=True)
    assert shown["events"][0]["dose_check"]["person_authorizing"] == "Luuk"


def test_spectrum_dynamics_dose_check_with_invalid_person_participant(report):
    rep = report("CT-RDSR-SpectrumDynamics.dcm")
    dc = rep.events[1].dose_check
    assert dc.accumulated_dlp_forward_estimate_mGycm == 21.64
    assert dc.dlp_forward_estimate_mGycm == 21.64
    assert dc.ctdivol_forward_estimate_mGy == 10.82
    assert (dc.dlp_alert_configured, dc.ctdivol_alert_configured) == (False, False)
    assert (dc.dlp_notification_configured, dc.ctdivol_notification_configured) == (False, False)
    assert dc.alert_reason is None and dc.notification_reason is None  # stated as empty text
    assert rep.events[2].dose_check.accumulated_dlp_forward_estimate_mGycm == 47.0858
    assert rep.events[2].dose_check.ctdivol_forward_estimate_mGy == 12.7676


def test_philips_notification_configured_with_value(report):
    dc = report("CT-RDSR-Philips_BigBore4DCT.dcm").events[0].dose_check
    assert dc.ctdivol_notification_value_mGy == 60.0 and dc.ctdivol_alert_value_mGy == 1000.0
    assert dc.dlp_alert_configured is False and dc.dlp_alert_value_mGycm is None


def test_cumulative_siemens_reports_repeat_earlier_event_uids(report):
    """Each cumulative report contains every event of the one before it (the store relies on it)."""
    one, two, three = (set(report(f"CT-RDSR-Siemens-Multi-{i}.dcm").event_uids) for i in (1, 2, 3))
    assert one < two < three
    assert report("CT-RDSR-Siemens-Multi-3.dcm").study_instance_uid == \
        report("CT-RDSR-Siemens-Multi-1.dcm").study_instance_uid


def test_illegal_multi_valued_pitch_takes_the_first_value_and_says_so():
    """Toshiba variable-pitch helicals write several values into the single-valued Pitch Factor."""
    ds = pydicom.dcmread(CORPUS / "CT-RDSR-Toshiba_DoseCheck.dcm")
    pitch = _find(ds, "113828")
    pitch.MeasuredValueSequence[0].NumericValue = ["0.813000", "1.375"]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert rep.events[0].pitch_factor == 0.813
    assert any("Pitch Factor" in w and "first" in w for w in rep.warnings)


def test_invalid_numeric_text_is_tolerated(report):
    """Toshiba writes '10.50/ 15.00' into a DS; it is not a value we read, and nothing breaks."""
    rep = report("CT-RDSR-Toshiba_MultiValSD.dcm")
    assert rep.totals.ct_dlp_total_mGycm == 136.9 and len(rep.events) == 3


def _find(ds, code_value):
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop(0)
        if item.ConceptNameCodeSequence[0].CodeValue == code_value:
            return item
        stack.extend(item.get("ContentSequence", []))
    raise AssertionError(code_value)



def test_a_vendor_code_with_a_standard_meaning_does_not_replace_the_standard_item():
    """A private item named like a standard concept comes first; the item coded as the concept is read."""
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="25.0", dlp="500")])
    acc = _find(ds, "113811")
    acc.ContentSequence.insert(0, rdsr.num(("V-2", "99VENDOR", "CT Dose Length Product Total"), "50",
                                           ("mGy.cm", "UCUM", "mGy.cm")))
    dose = _find(ds, "113829")
    dose.ContentSequence.insert(0, rdsr.num(("V-1", "99VENDOR", "Mean CTDIvol"), "3.1", ("mGy", "UCUM", "mGy")))
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert rep.totals.ct_dlp_total_mGycm == 500.0
    assert rep.events[0].ctdivol_mGy == 25.0


@pytest.mark.parametrize("coded", [("702569007", "SCT", "CBCT"), ("R-FB8F1", "SRT", "Cone beam")])
def test_cone_beam_acquisition_in_either_snomed_code_reads_as_the_standard_meaning(coded):
    """CID 10013: Cone Beam Acquisition is (702569007, SCT), formerly (R-FB8F1, SRT)."""
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head")])
    _find(ds, "113820").ConceptCodeSequence[0].CodeValue = coded[0]
    _find(ds, "113820").ConceptCodeSequence[0].CodingSchemeDesignator = coded[1]
    _find(ds, "113820").ConceptCodeSequence[0].CodeMeaning = coded[2]
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert rep.events[0].event_type == "Cone Beam Acquisition"


@pytest.mark.parametrize("as_code", [False, True])
def test_xray_modulation_type_as_text_or_as_code(as_code):
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head")])
    concept = ("113842", "DCM", "X-Ray Modulation Type")
    item = (rdsr.code(concept, ("114102", "DCM", "Longitudinal modulation")) if as_code
            else rdsr.text(concept, "Longitudinal modulation"))
    _find(ds, "113819").ContentSequence.append(item)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert rep.events[0].xray_modulation_type == "Longitudinal modulation"


def test_xray_modulation_type_stated_only_in_the_siemens_comment_is_read():
    """Siemens Definition Flash (older software) states the modulation type only in the acquisition's
    Comment ("..., X-ray Modulation Type = OFF, Sn Filter (Tube B) = yes")."""
    ds = pydicom.dcmread(CORPUS / "CT-RDSR-Siemens_Flash-QA-DS.dcm")
    rep = extract_dataset(ds)
    assert [e.xray_modulation_type for e in rep.events] == ["OFF"] * 7 + ["PULS_EC", "OFF"]
    assert "X-Ray Modulation Type read from the acquisition's Comment (9 times)" in rep.warnings


def test_a_stated_modulation_type_row_wins_over_the_comment():
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head")])
    acquisition = _find(ds, "113819").ContentSequence
    acquisition.append(rdsr.text(("121106", "DCM", "Comment"), "Body Size = Adult, X-ray Modulation Type = Z_EC"))
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert rep.events[0].xray_modulation_type == "Z_EC"
    acquisition.append(rdsr.text(("113842", "DCM", "X-Ray Modulation Type"), "XYZ_EC"))
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert rep.events[0].xray_modulation_type == "XYZ_EC"
    assert not any("Comment" in w for w in rep.warnings)


def test_person_authorizing_in_the_notification_details_is_read_too():
    """TID 10015: the Dose Check Notification Details have their own Person Name (who proceeded)."""
    ds = pydicom.dcmread(CORPUS / "CT-RDSR-Philips_BigBore4DCT.dcm")
    notification = _find(ds, "113908")
    person = pydicom.Dataset()
    person.RelationshipType, person.ValueType, person.PersonName = "CONTAINS", "PNAME", "Operator^Night"
    concept = pydicom.Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "113870", "DCM", "Person Name"
    person.ConceptNameCodeSequence = [concept]
    notification.ContentSequence.append(person)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert rep.events[0].dose_check.person_authorizing == "Operator^Night"
    assert "Operator" not in str(rep.to_dict())


def test_a_negative_dose_value_is_omitted_with_a_warning_not_subtracted():
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="600", dlp="9000"), rdsr.CTSeries("Head", ctdivol="-500", dlp="-7000")],
                        dlp_total="2000")
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert [e.ctdivol_mGy for e in rep.events] == [600.0, None]
    assert [e.dlp_mGycm for e in rep.events] == [9000.0, None]
    assert "Mean CTDIvol: negative value -500 omitted" in rep.warnings
    assert rep.events[1].kvp is not None  # the rest of the series is kept


def _codes(item):
    return [c.ConceptNameCodeSequence[0].CodeValue for c in item.ContentSequence]


def _wrap(parent, codes, vendor_code):
    """Move ``parent``'s children with these concept codes into a vendor container in their place."""
    from simulator import rdsr

    moved = [c for c in parent.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue in codes]
    at = parent.ContentSequence.index(moved[0])
    for c in moved:
        parent.ContentSequence.remove(c)
    parent.ContentSequence.insert(at, rdsr.container((vendor_code, "99VENDOR", "Vendor data"), moved))


@pytest.mark.parametrize("where", ["inside CT Dose", "without CT Dose", "inside the parameters"])
def test_ct_values_one_level_below_their_template_row_are_still_read(where):
    """docs/extraction.md, "Nesting": a value not where the template puts it is looked for further down.
    A CTDIvol that went missing here could raise no notification value and warned of nothing."""
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="61.25", dlp="980.5")])
    acquisition, dose, params = _find(ds, "113819"), _find(ds, "113829"), _find(ds, "113822")
    if where == "inside CT Dose":
        _wrap(dose, {"113830", "113838"}, "V-3")
    elif where == "without CT Dose":  # its rows directly in the acquisition
        acquisition.ContentSequence.remove(dose)
        acquisition.ContentSequence.extend(dose.ContentSequence)
    else:
        _wrap(params, {"113824", "113825"}, "V-4")
    (ev,) = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds)))).events
    assert (ev.ctdivol_mGy, ev.dlp_mGycm) == (61.25, 980.5)
    assert ev.exposure_time_s is not None and ev.scanning_length_mm is not None


def test_dose_check_details_one_level_below_ct_dose_are_still_read():
    """The Toshiba dose check (TID 10015) with its alert and notification containers inside a vendor container in
    CT Dose: the alert values and forward estimates were dropped without a warning, while the CTDIvol and DLP
    beside them, moved the same way, were read ("Nesting")."""
    ds = pydicom.dcmread(CORPUS / "CT-RDSR-Toshiba_DoseCheck.dcm")
    for acquisition in [c for c in ds.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "113819"]:
        dose = next(c for c in acquisition.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "113829")
        _wrap(dose, {"113900", "113908"}, "V-7")
    first, second = extract_dataset(ds).events
    assert (first.dose_check.dlp_alert_value_mGycm, first.dose_check.ctdivol_alert_value_mGy) == (100.0, 10.0)
    assert first.dose_check.accumulated_dlp_forward_estimate_mGycm == 251.2
    assert second.dose_check.accumulated_ctdivol_forward_estimate_mGy == 10.6
    assert (second.dose_check.dlp_notification_configured, second.dose_check.ctdivol_notification_configured) == \
        (False, False)


def test_acquisitions_and_totals_inside_a_vendor_container_are_read_with_a_warning():
    """Every CT Acquisition and the accumulated data wrapped in one vendor container at the root: the events
    and the total are read (they were silently dropped: 0 events beside a stated count of 2), and the record
    says they were not where the template puts them."""
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="40.5", dlp="700"), rdsr.CTSeries("Neck", ctdivol="12", dlp="300")])
    _wrap(ds, {"113819"}, "V-5")
    _wrap(ds, {"113811"}, "V-6")
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert [e.ctdivol_mGy for e in rep.events] == [40.5, 12.0]
    assert (rep.totals.ct_dlp_total_mGycm, rep.totals.ct_event_count) == (1000.0, 2)
    assert "2 'CT Acquisition' found inside another container, not where the template puts them" in rep.warnings
    assert "1 'CT Accumulated Dose Data' found inside another container, not where the template puts them" in rep.warnings


def test_a_stated_event_count_that_the_report_does_not_hold_is_a_warning():
    from simulator import rdsr

    ds = rdsr.ct_report([rdsr.CTSeries("Head"), rdsr.CTSeries("Neck")])
    ds.ContentSequence.remove(_find(ds, "113819"))  # the first acquisition
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert len(rep.events) == 1 and rep.totals.ct_event_count == 2
    assert "the report states 2 irradiation events and holds 1 CT Acquisitions" in rep.warnings
