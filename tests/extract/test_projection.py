"""Projection X-ray dose reports (TID 10001): fluoroscopy, radiography, mammography.

Expected values were read from each file with a separate pydicom walk and dcmdump (not
with this extractor).  Where the file uses another unit than the record the literal is the
file's number converted by hand (e.g. Canon's 126.596 dGy·cm² is 0.00126596 Gy·m²).
"""
from __future__ import annotations

import copy
import io

import pydicom
import pytest

from agent.extract import extract_dataset
from tests.conftest import CORPUS
from tests.extract.conftest import event

NOKVP = "1.3.6.1.4.1.14519.5.2.1.9999.9999."
ALPHENIX = "1.3.6.1.4.1.5962.99.1.3727292127.623808814.1657289733855."
ULTIMAXI = "1.3.6.1.4.1.5962.99.1.2317982913.1735696156.1578571013313."
EURO = "1.3.6.1.4.1.5962.99.1.1227319599.741127153.1517350807855."
OEC = "1.3.6.1.4.1.5962.99.1.2571299727.367693718.1557349493647."
GE = "1.3.6.1.4.1.5962.99.1.3577657414.286912992.1554060884038."
ALLURA = "1.3.6.1.4.1.5962.99.1.2392832606.1185842827.1484156582494."
AZURION = "1.3.6.1.4.1.5962.99.1.1558963508.703036332.1539157288244."
ZEE = "1.3.6.1.4.1.5962.99.1.3248661973.865054762.1480717444565."
DUAL = "1.3.6.1.4.1.5962.99.1.3406246027.1926427166.1523824701579."

T = dict  # totals
E = dict  # event fields

# file: (totals, {event index: fields}) -- every RF RDSR of the corpus
RF = {
    "RF-No-kVp-and-others.dcm": (
        T(dap_total_Gym2=2.954178618e-05, dose_rp_total_Gy=0.001313381045, fluoro_dap_total_Gym2=2.954178618e-05,
          fluoro_dose_rp_total_Gy=0.001313381045, fluoro_time_total_s=19.4, acquisition_dap_total_Gym2=0.0,
          acquisition_dose_rp_total_Gy=0.0, acquisition_time_total_s=0.0, radiographic_frames_total=0),
        {0: E(irradiation_event_uid=NOKVP + "172104101777648185764084977241", datetime_started="2017-11-09T15:00:56",
              event_type="Fluoroscopy", protocol="Skelet", target_region="Chest", dap_Gym2=1.912896902e-06,
              dose_rp_Gy=5.890427397e-05, kvp=None, tube_current_mA=None),
         10: E(irradiation_event_uid=NOKVP + "267377092428496632818896603033", dap_Gym2=1.048286063e-06,
               dose_rp_Gy=5.82469398e-05),
         19: E(irradiation_event_uid=NOKVP + "107260861966012803012642738420", datetime_started="2017-11-09T15:29:53",
               dap_Gym2=1.865015514e-06, dose_rp_Gy=5.74298514e-05)}),
    "RF-Pat-Orientation-Modifier-Missing.dcm": (
        T(dap_total_Gym2=0.046881, dose_rp_total_Gy=7.68897349461299, fluoro_dap_total_Gym2=0.0393063,
          fluoro_dose_rp_total_Gy=5.86624363804613, fluoro_time_total_s=2827.0, acquisition_dap_total_Gym2=0.0075747,
          acquisition_dose_rp_total_Gy=1.82272985656685, acquisition_time_total_s=152.856999999999,
          radiographic_frames_total=2495),
        {0: E(irradiation_event_uid=NOKVP + "980952458404764445460744938987", datetime_started="2017-11-06T10:41:25.084",
              event_type="Fluoroscopy", target_region="Chest", dap_Gym2=4.1e-06, dose_rp_Gy=0.0006451186463, kvp=120.0,
              tube_current_mA=200.0, pulse_width_ms=3.8, pulses=5.0),
         158: E(irradiation_event_uid=NOKVP + "875033925764846124277340512355",
                datetime_started="2017-11-06T12:28:13.59", dap_Gym2=4.77e-05, dose_rp_Gy=0.00968999933901,
                pulse_width_ms=4.6, pulses=60.0),
         315: E(irradiation_event_uid=NOKVP + "199996176894407946440187441899", event_type="Stationary Acquisition",
                dap_Gym2=4.28e-05, dose_rp_Gy=0.00775993125784, kvp=111.17, tube_current_mA=642.9, pulse_width_ms=9.3)}),
    "RF-RDSR-Canon-Alphenix-rotational.dcm": (
        T(dap_total_Gym2=0.00031522, dose_rp_total_Gy=0.012722, fluoro_dap_total_Gym2=2.587e-05,
          fluoro_dose_rp_total_Gy=0.001589, fluoro_time_total_s=70.0, acquisition_dap_total_Gym2=0.00028933,
          acquisition_dose_rp_total_Gy=0.011131, acquisition_time_total_s=10.161, radiographic_frames_total=217),
        {0: E(irradiation_event_uid=ALPHENIX + "4.0", event_type="Fluoroscopy", protocol="Gastro 7.5f/s Middle",
              dap_Gym2=5e-08, dose_rp_Gy=2e-06, kvp=70.0, tube_current_mA=28.8, exposure_time_s=0.04914,
              pulse_width_ms=7.02, pulses=7.0),
         24: E(irradiation_event_uid=ALPHENIX + "37.0", dap_Gym2=1.7e-07, dose_rp_Gy=1.3e-05, tube_current_mA=31.8,
               exposure_time_s=0.04644, pulse_width_ms=7.74, pulses=6.0),
         48: E(irradiation_event_uid=ALPHENIX + "72.0", event_type="Rotational Acquisition",
               protocol="Gastro Roll 4s 40cm", dap_Gym2=0.00028933, dose_rp_Gy=0.011131, kvp=92.0,
               tube_current_mA=140.0, exposure_time_s=1.43437, pulse_width_ms=6.61)}),
    "RF-RDSR-Canon-Ultimaxi-mGyDoseAtRP.dcm": (  # dGy.cm2 and mGy in the file
        T(dap_total_Gym2=0.00126596, dose_rp_total_Gy=0.030573, fluoro_dap_total_Gym2=0.00106281,
          fluoro_dose_rp_total_Gy=0.025664, fluoro_time_total_s=111.0, acquisition_dap_total_Gym2=0.00020315,
          acquisition_dose_rp_total_Gy=0.004909, acquisition_time_total_s=1.25, radiographic_frames_total=None),
        {0: E(irradiation_event_uid=ULTIMAXI + "4.0", event_type="Fluoroscopy", protocol="Ba Swallow",
              dap_Gym2=1.323e-05, dose_rp_Gy=0.000384, kvp=85.0, tube_current_mA=10.0, exposure_time_s=0.580000019,
              pulse_width_ms=5.8, pulses=100.0),
         9: E(irradiation_event_uid=ULTIMAXI + "51.0", event_type="Stationary Acquisition", dap_Gym2=3.436e-05,
              dose_rp_Gy=0.000882, kvp=100.0, tube_current_mA=250.0, exposure_time_s=0.0211, pulses=1.0),
         17: E(irradiation_event_uid=ULTIMAXI + "63.0", dap_Gym2=3.442e-05, dose_rp_Gy=0.000704,
               exposure_time_s=0.0165)}),
    "RF-RDSR-Eurocolumbus.dcm": (
        T(dap_total_Gym2=9e-06, dose_rp_total_Gy=0.000394, fluoro_dap_total_Gym2=0.0, fluoro_dose_rp_total_Gy=0.0,
          fluoro_time_total_s=0.0, acquisition_dap_total_Gym2=9e-06, acquisition_dose_rp_total_Gy=0.000394,
          acquisition_time_total_s=9.687),
        {0: E(irradiation_event_uid=EURO + "4.0", protocol="vascular-knee-scopy-dose_level_normal",
              target_region="Knee", laterality="left", dap_Gym2=3e-06, dose_rp_Gy=0.000136008,
              entrance_exposure_at_rp_mGy=0.136008, exposure_time_s=0.168, pulses=22.0,
              # per-pulse values (22 of each) are averaged: kV sum 1190, mA sum 1050, ms sum 168
              kvp=1190 / 22, tube_current_mA=1050 / 22, pulse_width_ms=168 / 22),
         2: E(irradiation_event_uid=EURO + "6.0", dose_rp_Gy=9.6641e-05, entrance_exposure_at_rp_mGy=0.096641,
              kvp=50.0, tube_current_mA=50.0, pulse_width_ms=8.0, exposure_time_s=0.272, pulses=34.0),
         3: E(irradiation_event_uid=EURO + "7.0", dose_rp_Gy=9.95699e-05, exposure_time_s=0.28, pulses=35.0)}),
    "RF-RDSR-GE-OECEliteMiniView.dcm": (
        T(dap_total_Gym2=1.3316568e-06, dose_rp_total_Gy=0.00022034578, fluoro_dap_total_Gym2=1.3316568e-06,
          fluoro_dose_rp_total_Gy=0.00022034578, fluoro_time_total_s=11.18, acquisition_dap_total_Gym2=0.0,
          acquisition_dose_rp_total_Gy=0.0, acquisition_time_total_s=0.0, radiographic_frames_total=0),
        {0: E(irradiation_event_uid=OEC + "7.0", datetime_started="2019-03-08T10:58:16.821", event_type="Fluoroscopy",
              target_region="Topography unknown", dap_Gym2=2.1887442e-07, dose_rp_Gy=3.621658e-05, kvp=56.0,
              tube_current_mA=0.0927, exposure_time_s=1.61),
         11: E(irradiation_event_uid=OEC + "18.0", dap_Gym2=4.969537e-08, dose_rp_Gy=8.222962e-06, kvp=55.0,
               tube_current_mA=0.0877, exposure_time_s=0.37),
         21: E(irradiation_event_uid=OEC + "31.0", dap_Gym2=8.585693e-08, dose_rp_Gy=1.4206522e-05,
               tube_current_mA=0.0873, exposure_time_s=0.65)}),
    "RF-RDSR-GE.dcm": (
        T(dap_total_Gym2=0.00024126, dose_rp_total_Gy=0.0117317, fluoro_dap_total_Gym2=0.00024126,
          fluoro_dose_rp_total_Gy=0.0117317, fluoro_time_total_s=72.46, acquisition_dap_total_Gym2=0.0,
          acquisition_dose_rp_total_Gy=0.0, acquisition_time_total_s=0.0, radiographic_frames_total=0),
        {0: E(irradiation_event_uid=GE + "5.0", protocol="Unknown Protocol", dap_Gym2=2.206e-05,
              dose_rp_Gy=0.00107252, kvp=72.4890976, tube_current_mA=2.74306011, exposure_time_s=7.333,
              exposure_uAs=20918.59960938),
         4: E(irradiation_event_uid=GE + "9.0", dap_Gym2=4.932e-05, dose_rp_Gy=0.0023984, kvp=72.6493988,
              tube_current_mA=2.63462996, exposure_time_s=16.966, exposure_uAs=45458.0),
         7: E(irradiation_event_uid=GE + "12.0", dap_Gym2=2.095e-05, dose_rp_Gy=0.00101897, kvp=72.64430237,
              tube_current_mA=2.6259501, exposure_time_s=7.233, exposure_uAs=19723.5)}),
    "RF-RDSR-Philips_Allura.dcm": (
        T(dap_total_Gym2=0.00015356864017, dose_rp_total_Gy=0.00427128035068, fluoro_dap_total_Gym2=1.0558274005e-05,
          fluoro_dose_rp_total_Gy=0.00029308116866, fluoro_time_total_s=13.0,
          acquisition_dap_total_Gym2=0.00014301036616, acquisition_dose_rp_total_Gy=0.00397819918202,
          acquisition_time_total_s=14.75, radiographic_frames_total=27),
        {0: E(irradiation_event_uid=ALLURA + "8.0", datetime_started="2016-03-15T08:44:13.294",
              event_type="Fluoroscopy", target_region="Abdomen", dap_Gym2=1.0558274005e-05,
              dose_rp_Gy=0.00029308116866, kvp=69.3977142857142, tube_current_mA=51.510944392304,
              pulse_width_ms=4.05582655886454, pulses=98.0),
         1: E(irradiation_event_uid=ALLURA + "9.0", event_type="Stationary Acquisition", protocol="Abdomen 2fps 25%",
              dap_Gym2=6.4148712533e-05, dose_rp_Gy=0.00178446054343, kvp=80.0, tube_current_mA=50.7532783473531,
              pulse_width_ms=45.3307501350839, pulses=12.0),
         2: E(irradiation_event_uid=ALLURA + "10.0", dap_Gym2=7.8861653634e-05, dose_rp_Gy=0.00219373863859,
              tube_current_mA=49.9810700615247, pulse_width_ms=45.2772662043571, pulses=15.0)}),
    "RF-RDSR-Philips_Azurion.dcm": (
        T(dap_total_Gym2=0.00247409, dose_rp_total_Gy=0.54837, fluoro_dap_total_Gym2=0.00101567,
          fluoro_dose_rp_total_Gy=0.221977, fluoro_time_total_s=567.922, acquisition_dap_total_Gym2=0.00145842,
          acquisition_dose_rp_total_Gy=0.326393, acquisition_time_total_s=72.539, radiographic_frames_total=9581),
        {0: E(irradiation_event_uid=AZURION + "46.0", datetime_started="2018-10-04T13:49:03",
              protocol="Functieonderzoek t.b.v. HCK", target_region="Chest", dap_Gym2=4.05878e-06,
              dose_rp_Gy=0.000603992, kvp=87.0, tube_current_mA=166.0, pulse_width_ms=2.27658,
              exposure_uAs=375.967, pulses=60.0),
         44: E(irradiation_event_uid=AZURION + "90.0", dap_Gym2=2.38344e-06, dose_rp_Gy=0.000498195, kvp=97.0,
               tube_current_mA=200.0, pulse_width_ms=2.79825, exposure_uAs=559.562, pulses=16.0),
         88: E(irradiation_event_uid=AZURION + "134.0", dap_Gym2=6.40262e-06, dose_rp_Gy=0.00127168, kvp=101.0,
               tube_current_mA=198.0, pulse_width_ms=2.63985, exposure_uAs=523.1, pulses=40.0)}),
    "RF-RDSR-Siemens-Zee.dcm": (
        T(dap_total_Gym2=1.6e-05, dose_rp_total_Gy=0.00252, fluoro_dap_total_Gym2=1.6e-05,
          fluoro_dose_rp_total_Gy=0.00252, fluoro_time_total_s=28.0, acquisition_dap_total_Gym2=0.0,
          acquisition_dose_rp_total_Gy=0.0, acquisition_time_total_s=0.0),
        {0: E(irradiation_event_uid=ZEE + "4.0", datetime_started="2016-05-12T10:11:54", protocol="FL - Ang",
              dap_Gym2=1e-06, dose_rp_Gy=0.00014, kvp=77.0, tube_current_mA=95.1, exposure_time_s=0.1008,
              pulse_width_ms=4.2, exposure_uAs=9586.0, pulses=24.0),
         4: E(irradiation_event_uid=ZEE + "8.0", dap_Gym2=3.8e-06, dose_rp_Gy=0.00059, tube_current_mA=98.2,
              exposure_time_s=0.3712, pulse_width_ms=12.8, exposure_uAs=36451.0, pulses=29.0),
         7: E(irradiation_event_uid=ZEE + "11.0", dap_Gym2=4e-07, dose_rp_Gy=6e-05, tube_current_mA=33.0,
              exposure_time_s=0.069, pulse_width_ms=3.0, exposure_uAs=2277.0, pulses=23.0)}),
    "Dual-RDSR-RF.dcm": (
        T(dap_total_Gym2=2.12e-06, dose_rp_total_Gy=0.0001, fluoro_dap_total_Gym2=4e-07, fluoro_dose_rp_total_Gy=0.0,
          fluoro_time_total_s=4.0, acquisition_dap_total_Gym2=1.72e-06, acquisition_dose_rp_total_Gy=0.0001,
          acquisition_time_total_s=2.0),
        {0: E(irradiation_event_uid=DUAL + "4.0", datetime_started="2018-04-13T13:13:26.0488", protocol="CP_Standard",
              dap_Gym2=2e-07, dose_rp_Gy=0.0, kvp=73.0, tube_current_mA=17.0, exposure_time_s=0.034,
              pulse_width_ms=5.8, exposure_uAs=100.0),
         2: E(irradiation_event_uid=DUAL + "7.0", protocol="CP_Paediatric", kvp=74.0, tube_current_mA=16.0,
              exposure_time_s=0.024, pulse_width_ms=6.0),
         3: E(irradiation_event_uid=DUAL + "8.0", event_type="Stationary Acquisition", dap_Gym2=5.6e-07,
              dose_rp_Gy=1.3e-05, kvp=67.8, tube_current_mA=500.0, exposure_time_s=0.001, pulse_width_ms=1.2,
              exposure_uAs=600.0)}),
}
RF["RF-RDSR-Siemens-Zee_adjusted.dcm"] = RF["RF-RDSR-Siemens-Zee.dcm"]  # same exposures, study moved 2 days

# DX and MG RDSRs: stated totals
DX_MG_TOTALS = {
    "DX-RDSR-Canon_CXDI.dcm": T(dap_total_Gym2=1.07e-05, dose_rp_total_Gy=None, acquisition_dap_total_Gym2=1.07e-05,
                                acquisition_time_total_s=0.005),
    "DX-RDSR-Carestream_DRXEvolution.dcm": T(dap_total_Gym2=5.80999970e-06, dose_rp_total_Gy=0.00029927175492,
                                             radiographic_frames_total=5),
    "Dual-RDSR-DX.dcm": T(dap_total_Gym2=2.39e-06, dose_rp_total_Gy=0.0, fluoro_time_total_s=0.0,
                          acquisition_dap_total_Gym2=2.39e-06, acquisition_time_total_s=1.0),
    "MG-RDSR-GEPristina-2D.dcm": T(agd_total_mGy={"left": 0.0, "right": 9.68}),
    "MG-RDSR-GEPristina-DBT.dcm": T(agd_total_mGy={"left": 0.0, "right": 1.09}),
    "MG-RDSR-Giotto-DBT.dcm": T(agd_total_mGy={"right": 4.422, "left": 4.842}),
    "MG-RDSR-Hologic_2D.dcm": T(agd_total_mGy={"left": 1.3, "right": 1.28}),
    "MG-RDSR-Hologic_mix.dcm": T(agd_total_mGy={"left": 0.87, "right": 2.71}),
}

MODALITY = {
    "RF-No-kVp-and-others.dcm": "RF", "RF-Pat-Orientation-Modifier-Missing.dcm": "XA",
    "RF-RDSR-Canon-Alphenix-rotational.dcm": "XA", "RF-RDSR-Canon-Ultimaxi-mGyDoseAtRP.dcm": "RF",
    "RF-RDSR-Eurocolumbus.dcm": "RF", "RF-RDSR-GE-OECEliteMiniView.dcm": "XA", "RF-RDSR-GE.dcm": "RF",
    "RF-RDSR-Philips_Allura.dcm": "XA", "RF-RDSR-Philips_Azurion.dcm": "RF", "RF-RDSR-Siemens-Zee.dcm": "RF",
    "RF-RDSR-Siemens-Zee_adjusted.dcm": "RF", "Dual-RDSR-RF.dcm": "RF", "Dual-RDSR-DX.dcm": "CR",
    "DX-RDSR-Canon_CXDI.dcm": "DX", "DX-RDSR-Canon_CXDI_noDAP.dcm": "DX", "DX-RDSR-Carestream_DRXEvolution.dcm": "DX",
    "MG-RDSR-GEPristina-2D.dcm": "MG", "MG-RDSR-GEPristina-DBT.dcm": "MG", "MG-RDSR-Giotto-DBT.dcm": "MG",
    "MG-RDSR-Hologic_2D.dcm": "MG", "MG-RDSR-Hologic_mix.dcm": "MG",
}


@pytest.mark.parametrize("name", sorted(RF))
def test_fluoroscopy_totals_are_the_stated_ones(report, name):
    rep = report(name)
    expected = RF[name][0]
    assert {k: getattr(rep.totals, k) for k in expected} == expected


@pytest.mark.parametrize("name", sorted(RF))
def test_fluoroscopy_events_first_middle_last(report, name):
    rep = report(name)
    for index, expected in RF[name][1].items():
        ev = rep.events[index]
        assert {k: getattr(ev, k) for k in expected} == expected, f"{name} event {index}"


@pytest.mark.parametrize("name", sorted(DX_MG_TOTALS))
def test_radiography_and_mammography_totals(report, name):
    rep = report(name)
    expected = DX_MG_TOTALS[name]
    assert {k: getattr(rep.totals, k) for k in expected} == expected


@pytest.mark.parametrize("name", sorted(MODALITY))
def test_projection_modality(report, name):
    assert report(name).modality == MODALITY[name]
    assert report(name).kind == "projection"


def test_dose_at_rp_in_mgy_is_converted_with_a_warning(report):
    rep = report("RF-RDSR-Canon-Ultimaxi-mGyDoseAtRP.dcm")
    assert rep.totals.dose_rp_total_Gy == 0.030573  # 30.573 mGy in the file
    assert rep.events[0].dose_rp_Gy == 0.000384  # 0.384 mGy
    assert any("Dose (RP) Total given in mGy" in w for w in rep.warnings)
    assert any("Dose Area Product given in dGy.cm2" in w and "18 times" in w for w in rep.warnings)


def test_empty_dap_measured_value_is_absent_not_zero(report):
    rep = report("DX-RDSR-Canon_CXDI_noDAP.dcm")
    assert rep.totals.dap_total_Gym2 is None and rep.totals.dose_rp_total_Gy is None
    assert rep.totals.acquisition_time_total_s == 0.0218
    assert [e.dap_Gym2 for e in rep.events] == [None, None]
    first = rep.to_dict()["events"][0]
    assert "dap_Gym2" not in first and "dose_rp_Gy" not in first
    assert (first["kvp"], first["tube_current_mA"], first["exposure_time_s"], first["exposure_uAs"]) == \
        (43.0, 110.0, 0.011, 1199.0)
    # and the record says the modality stated no value (a physicist looking for the DAP sees why it is missing)
    assert "Dose Area Product: stated without a value; omitted (2 times)" in rep.warnings
    assert "Dose Area Product Total: stated without a value; omitted" in rep.warnings


def test_a_value_stated_as_unknown_says_its_qualifier(report):
    rep = report("RF-ESR-Siemens-Varic.dcm")  # Cumulative air kerma: empty, qualifier "Measurement not attempted"
    assert "Cumulative air kerma: stated without a value (Measurement not attempted); omitted" in rep.warnings


def test_missing_template_identifier_is_inferred(report):
    rep = report("RF-RDSR-GE-OECEliteMiniView.dcm")
    assert rep.template == "10001"
    assert any("template 10001 inferred" in w for w in rep.warnings)
    assert len(rep.events) == 22


def test_316_event_report(report):
    rep = report("RF-Pat-Orientation-Modifier-Missing.dcm")
    assert len(rep.events) == 316
    assert len(set(rep.event_uids)) == 316
    assert rep.totals.dap_total_Gym2 == 0.046881
    # empty manufacturer/model in the header: the SR's device observer fills the model, with a note
    assert rep.device.manufacturer is None and rep.device.model == "Allura Xper"
    assert any("model is empty in the header" in w for w in rep.warnings)


def test_acquisition_device_type_contradicted_by_fluoroscopy(report):
    rep = report("RF-RDSR-Philips_Azurion.dcm")
    assert rep.modality == "RF"
    assert any("Integrated Projection Radiography System" in w for w in rep.warnings)


def test_per_pulse_exposure_is_summed(report):
    """Giotto tomosynthesis states the exposure of each of 11 projections."""
    ev = report("MG-RDSR-Giotto-DBT.dcm").events[0]
    assert ev.pulses == 11.0
    assert ev.exposure_uAs == 139890.0  # 6220+13370+13400+13400+13380+13400+13370+13360+13330+13340+13320
    assert ev.kvp == 27.0 and ev.tube_current_mA == 104.0


def test_mammography_events(report):
    rep = report("MG-RDSR-Hologic_2D.dcm")
    left, right = rep.events
    assert (left.laterality, left.agd_mGy, left.entrance_exposure_at_rp_mGy, left.half_value_layer_mm,
            left.compression_thickness_mm, left.kvp, left.exposure_uAs) == ("left", 1.3, 3.65, 0.535, 43.0, 28.0, 90200.0)
    assert (right.laterality, right.agd_mGy, right.exposure_time_s) == ("right", 1.28, 0.84)
    assert [(f.material, f.min_mm, f.max_mm) for f in left.filters] == [("Rhodium or Rhodium compound", 0.05, 0.05)]
    pristina = report("MG-RDSR-GEPristina-2D.dcm").events[0]
    assert pristina.kvp == (34.1 + 33.99) / 2 == 34.045  # two pulses: pre-exposure and main
    dbt = report("MG-RDSR-GEPristina-DBT.dcm").events[0]
    assert dbt.event_type == "Rotational Acquisition" and dbt.agd_mGy == 1.09 and dbt.pulses == 10.0
    assert len(dbt.filters) == 1  # the same filter repeated for each projection is listed once


def test_several_observers_prefer_the_device(report):
    rep = report("DX-RDSR-Carestream_DRXEvolution.dcm")
    assert rep.device.device_observer_uid == "1.3.6.1.4.1.5962.99.1.84038123.1638714927.1486142755307.21.0"
    assert any("2 observers" in w for w in rep.warnings)


def test_siemens_radiation_summary_report(report):
    rep = report("RF-ESR-Siemens-Varic.dcm")
    assert (rep.kind, rep.modality, rep.source, rep.events) == ("projection", "RF", "enhanced-sr", [])
    assert rep.totals.fluoro_time_total_s == 34.427
    assert rep.totals.dap_total_Gym2 == 2.359e-05  # 0.2359 Gy.cm2
    assert rep.totals.dose_rp_total_Gy is None  # "measurement not attempted"


def test_event_found_by_its_uid(report):
    ev = event(report("RF-RDSR-Philips_Allura.dcm"), ALLURA + "9.0")
    assert ev.pulses == 12.0


def test_biplane_totals_are_the_sum_of_the_stated_plane_totals():
    """A second (plane B) Accumulated X-Ray Dose container next to the first: totals add, the system is XA."""
    ds = pydicom.dcmread(CORPUS / "RF-RDSR-Siemens-Zee.dcm")
    items = list(ds.ContentSequence)
    index = next(i for i, it in enumerate(items) if it.ConceptNameCodeSequence[0].CodeValue == "113702")
    plane_a = items[index]
    plane_b = copy.deepcopy(plane_a)
    for container, (value, meaning) in ((plane_a, ("113620", "Plane A")), (plane_b, ("113621", "Plane B"))):
        plane = next(c for c in container.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "113764")
        plane.ConceptCodeSequence[0].CodeValue, plane.ConceptCodeSequence[0].CodeMeaning = value, meaning
    ds.ContentSequence.insert(index + 1, plane_b)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert (rep.totals.dap_total_Gym2, rep.totals.dose_rp_total_Gy, rep.totals.fluoro_time_total_s) == \
        (3.2e-05, 0.00504, 56.0)  # 2 x 1.6e-005 Gym2, 2 x 0.00252 Gy, 2 x 28 s
    assert rep.modality == "XA"
    assert any("2 acquisition planes" in w for w in rep.warnings)
    assert not any("may be partial" in w for w in rep.warnings)

    # a plane that does not state a total: the sum is that of the other plane, and the record says so
    del plane_b.ContentSequence[[c.ConceptNameCodeSequence[0].CodeValue for c in plane_b.ContentSequence].index("113725")]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert (rep.totals.dap_total_Gym2, rep.totals.dose_rp_total_Gy) == (3.2e-05, 0.00252)
    assert "dose_rp_total_Gy is stated for 1 of the 2 planes: the total may be partial" in rep.warnings


def test_a_vendor_sub_container_does_not_stand_in_for_the_templates_own_rows():
    """TID 10003 and TID 10002 rows are children of their container; a vendor's nested breakdown that
    repeats the concepts (per-frame DAP, its own subtotals) comes first in content order and must not
    replace them, nor enter the per-pulse mean."""
    from simulator import rdsr

    vendor = ("99VENDOR", "99VND")
    ds = rdsr.projection_report([rdsr.ProjectionEvent(uid="1.2.3.4.5", dap="0.0005", dose_rp="0.004", kvp="90")])
    acc = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "113702")
    ev = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "113706")
    acc.ContentSequence.insert(1, rdsr.container(("PV-9", vendor[0], "Vendor subtotals"), [
        rdsr.num(("113722", "DCM", "Dose Area Product Total"), "0.0001", ("Gy.m2", "UCUM", "Gy.m2"))]))
    ev.ContentSequence.insert(2, rdsr.container(("PV-1", vendor[0], "Vendor frame breakdown"), [
        rdsr.num(("122130", "DCM", "Dose Area Product"), "0.000001", ("Gy.m2", "UCUM", "Gy.m2")),
        rdsr.num(("113738", "DCM", "Dose (RP)"), "0.00001", ("Gy", "UCUM", "Gy")),
        rdsr.num(("113733", "DCM", "KVP"), "60", ("kV", "UCUM", "kV"))]))
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert rep.totals.dap_total_Gym2 == 0.0005
    (only,) = rep.events
    assert (only.dap_Gym2, only.dose_rp_Gy, only.kvp) == (0.0005, 0.004, 90.0)


def test_a_value_found_only_further_down_is_still_read():
    """A vendor that nests the event's values one level down (no row at the event's own level) keeps them."""
    from simulator import rdsr

    ds = rdsr.projection_report([rdsr.ProjectionEvent(uid="1.2.3.4.6", dap="0.0007", dose_rp="0.003", kvp="77")])
    ev = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "113706")
    moved = [it for it in ev.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue in ("122130", "113733")]
    for it in moved:
        ev.ContentSequence.remove(it)
    ev.ContentSequence.append(rdsr.container(("PV-2", "99VENDOR", "Vendor source data"), moved))
    (only,) = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds)))).events
    assert (only.dap_Gym2, only.dose_rp_Gy, only.kvp) == (0.0007, 0.003, 77.0)


def test_events_and_totals_inside_a_vendor_container_at_the_root_are_read_with_a_warning():
    """A vendor that wraps every Irradiation Event X-Ray Data and the Accumulated X-Ray Dose Data in a
    container of its own: they were silently dropped (0 events, no totals, no warning)."""
    from simulator import rdsr

    ds = rdsr.projection_report([rdsr.ProjectionEvent(uid="1.2.3.4.7", dap="0.0007", dose_rp="0.003", kvp="77"),
                                 rdsr.ProjectionEvent(uid="1.2.3.4.8", dap="0.0002", dose_rp="0.001", kvp="70")])
    for code, vendor in (("113706", "PV-3"), ("113702", "PV-4")):
        moved = [it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == code]
        at = ds.ContentSequence.index(moved[0])
        for it in moved:
            ds.ContentSequence.remove(it)
        ds.ContentSequence.insert(at, rdsr.container((vendor, "99VENDOR", "Vendor data"), moved))
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(ds))))
    assert [(e.irradiation_event_uid, e.dap_Gym2) for e in rep.events] == [("1.2.3.4.7", 0.0007), ("1.2.3.4.8", 0.0002)]
    assert rep.totals.dap_total_Gym2 == 0.0009
    assert "2 'Irradiation Event X-Ray Data' found inside another container, not where the template puts them" in rep.warnings


def _hologic_accumulated():
    ds = pydicom.dcmread(CORPUS / "MG-RDSR-Hologic_2D.dcm")
    acc = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "113702")
    return ds, acc, [it for it in acc.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "111637"]


def _reread(ds):
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return extract_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))


def test_accumulated_agd_of_both_breasts():
    """One Accumulated AGD for the two breasts, its laterality coded as (63762007, SCT, "Both breasts")."""
    ds, acc, (left, right) = _hologic_accumulated()
    acc.ContentSequence.remove(right)
    side = left.ContentSequence[0].ConceptCodeSequence[0]
    side.CodeValue, side.CodingSchemeDesignator, side.CodeMeaning = "63762007", "SCT", "Both breasts"
    assert _reread(ds).totals.agd_total_mGy == {"both": 1.3}


def test_accumulated_agd_with_its_laterality_beside_it_not_under_it():
    """A report that puts the one Laterality next to the one Accumulated AGD: the value is not lost.
    With two AGDs and one laterality beside them, neither is guessed."""
    ds, acc, (left, right) = _hologic_accumulated()
    acc.ContentSequence.remove(right)
    side = left.ContentSequence.pop()
    side.RelationshipType = "HAS CONCEPT MOD"
    del left.ContentSequence
    acc.ContentSequence.append(side)
    rep = _reread(ds)
    assert rep.totals.agd_total_mGy == {"left": 1.3}

    ds, acc, (left, right) = _hologic_accumulated()
    acc.ContentSequence.append(left.ContentSequence.pop())
    del left.ContentSequence
    rep = _reread(ds)
    assert rep.totals.agd_total_mGy == {"right": 1.28}
    assert any("without laterality" in w for w in rep.warnings)


def test_a_fluoroscopy_systems_report_of_acquisitions_only_is_not_radiography():
    """DSA runs only: no fluoroscopy event, fluoro totals stated as 0 (TID 10004) — an angiography or
    fluoroscopy system (RF), so that the fluoroscopy dose thresholds apply; not DX."""
    from simulator import rdsr

    runs = [rdsr.ProjectionEvent(event_type="Stationary Acquisition", protocol="DSA run", dap="0.02", dose_rp="1.5")
            for _ in range(4)]
    rep = extract_dataset(pydicom.dcmread(io.BytesIO(rdsr.encode(rdsr.projection_report(runs)))))
    assert rep.totals.fluoro_time_total_s == 0 and rep.totals.dose_rp_total_Gy == 6.0
    assert rep.modality == "RF"
    assert any("modality RF" in w for w in rep.warnings)


def test_accumulated_agd_of_both_breasts_under_the_snomed_rt_code():
    """CID 6022 lists "Both breasts" as (T-04080, SRT) in editions before SNOMED-CT codes: the same concept
    as (63762007, SCT), read by its code and with no warning that the code is not the standard one;
    with a meaning that does not say "both" it was not read at all."""
    ds, acc, (left, right) = _hologic_accumulated()
    acc.ContentSequence.remove(right)
    side = left.ContentSequence[0].ConceptCodeSequence[0]
    side.CodeValue, side.CodingSchemeDesignator, side.CodeMeaning = "T-04080", "SRT", "Breasts"
    rep = _reread(ds)
    assert rep.totals.agd_total_mGy == {"both": 1.3}
    assert not any("matched by meaning" in w or "without laterality" in w for w in rep.warnings)


def test_philips_private_number_of_frames_stands_in_for_number_of_pulses():
    """An Allura Xper event that states its pulses only as the private Number of Frames (99PHI-IXR-XPER 003)."""
    ds = pydicom.dcmread(CORPUS / "RF-RDSR-Philips_Allura.dcm")
    first = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "113706")
    first.ContentSequence = [it for it in first.ContentSequence
                             if it.ConceptNameCodeSequence[0].CodeValue != "113768"]  # Number of Pulses 98
    rep = _reread(ds)
    assert rep.events[0].pulses == 98.0  # Number of Frames 98
    assert "Number of Pulses from the Philips private Number of Frames (99PHI-IXR-XPER)" in rep.warnings
    assert [e.pulses for e in rep.events[1:]] == [12.0, 15.0]  # the standard row, where there is one
