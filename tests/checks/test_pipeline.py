"""The checks stage in the real pipeline: encoded DICOM in, alerts committed with the report, published after commit."""
from decimal import Decimal

import pytest
from pydicom.uid import generate_uid

from agent.bus import Bus
from agent.checks import ChecksStage, list_alerts
from agent.checks.stats import compute
from agent.pipeline import Pipeline
from simulator import rdsr
from tests.checks.conftest import REPO_CONFIG, rules_from

LOCAL_CHEST = """
[[checks.level]]
id = "site-chest-notification"
kind = "notification_value"
modality = "CT"
region = "torso"
quantity = "CTDIvol"
value = 7
unit = "mGy"
scope = "per_event"
source = "site test value"
evidence = "local"
verified = true

[[checks.level]]
id = "site-chest-dlp"
kind = "local_DRL"
modality = "CT"
exam = "CT chest"
quantity = "DLP"
value = 200
unit = "mGy·cm"
scope = "per_examination"
source = "site test value"
evidence = "local"
verified = true
"""


class Agent:
    def __init__(self, store, tmp_path, rules):
        self.bus = Bus()
        self.published = []
        self.bus.subscribe(lambda topic, alert: self.published.append(alert), {"alert"})
        self.pipeline = Pipeline(store, tmp_path / "spool", "CT1", self.bus, stages=[ChecksStage(rules)])
        self.store = store

    def send(self, path_or_bytes):
        data = path_or_bytes.read_bytes() if hasattr(path_or_bytes, "read_bytes") else path_or_bytes
        outcome = self.pipeline.ingest(data, "dicom", calling_ae="TEST")
        assert outcome.status in ("stored", "duplicate"), outcome.reason
        return outcome

    def alerts(self, **kw):
        return list_alerts(self.store.db, **kw)


@pytest.fixture
def agent_for(store, tmp_path):
    return lambda text="": Agent(store, tmp_path, rules_from(text))


def test_siemens_cumulative_rdsrs_raise_each_alert_once(agent_for, corpus):
    agent = agent_for(LOCAL_CHEST)
    raised = []
    for n in (1, 2, 3):
        outcome = agent.send(corpus / f"CT-RDSR-Siemens-Multi-{n}.dcm")
        raised.append(sorted((a.rule, str(a.value)) for a in outcome.ingest.alerts))
    assert raised == [
        [],  # the topogram only
        [("site-chest-notification", "8.13")],
        [("site-chest-dlp", "236.09"), ("site-chest-notification", "7.02")],  # DLP 7.46 + 69.81 + 158.82, once
    ]
    assert agent.send(corpus / "CT-RDSR-Siemens-Multi-3.dcm").status == "duplicate"
    assert agent.send(corpus / "CT-RDSR-Siemens-Multi-2.dcm").status == "duplicate"
    assert len(agent.alerts()) == 3
    assert sorted(a.id for a in agent.published) == sorted(a.id for a in agent.alerts())  # published after commit
    (dlp,) = agent.alerts(kind="exam_above_drl")
    assert (dlp.exam, dlp.unit, dlp.source) == ("CT chest", "mGy·cm", "site test value")


def test_toshiba_scanner_dose_check_alerts_are_surfaced(agent_for, corpus):
    outcome = agent_for().send(corpus / "CT-RDSR-Toshiba_DoseCheck.dcm")
    found = sorted((a.kind, a.severity, a.quantity, str(a.value), str(a.threshold)) for a in outcome.ingest.alerts)
    assert found == [
        ("modality_dose_check", "critical", "CTDIvol", "10.6", "10.0"),
        ("modality_dose_check", "critical", "DLP", "251.2", "100.0"),
        ("modality_dose_check", "critical", "DLP", "502.4", "100.0"),
    ]
    assert all("no reason recorded on the scanner" in a.message and a.exam == "CT abdomen-pelvis"
               for a in outcome.ingest.alerts)


def test_spectrum_dynamics_qa_is_unmatched_quiet_and_visible_in_stats(agent_for, corpus):
    agent = agent_for()
    outcome = agent.send(corpus / "CT-RDSR-SpectrumDynamics.dcm")
    assert outcome.ingest.alerts == []  # no dose-check value configured, no reason given, no region value applies
    rows = compute(agent.store.db, agent.pipeline.stages[0].rules)
    assert {(r["exam"], r["quantity"]) for r in rows} == {("unmatched", "CTDIvol"), ("unmatched", "DLP")}


def test_synthetic_cumulative_fluoroscopy_rdsrs_fire_each_threshold_once(agent_for):
    agent = agent_for()
    study = generate_uid()
    a = rdsr.ProjectionEvent(dap="0.0150", dose_rp="2.0", exposure_time_ms="600000")
    b = rdsr.ProjectionEvent(dap="0.0120", dose_rp="1.5", exposure_time_ms="600000")
    c = rdsr.ProjectionEvent(dap="0.0030", dose_rp="0.2", exposure_time_ms="120000")
    levels = []
    for events in ([a], [a, b], [a, b, c]):  # each report repeats the earlier events
        outcome = agent.send(rdsr.encode(rdsr.projection_report(events, study_uid=study)))
        levels.append(sorted((x.rule, str(x.value), x.unit) for x in outcome.ingest.alerts))
    assert levels == [
        [],  # Ka,r 2 Gy, KAP 150 Gy·cm², 10 min
        [("ncrp168-kar-first", "3.5", "Gy")],  # Ka,r 3.5 Gy; KAP 270 Gy·cm², 20 min
        [("ncrp168-kap-first", "300", "Gy·cm²")],  # KAP exactly 0.0300 Gy·m²; Ka,r 3.7 Gy has no new level
    ]
    assert {a.procedure_id for a in agent.alerts()} == {study}


def _biplane(events_by_plane: dict[str, list], study: str) -> bytes:
    """A projection RDSR of a biplane system: an Accumulated X-Ray Dose Data container and events per plane."""
    planes = {"A": ("113620", "DCM", "Plane A"), "B": ("113621", "DCM", "Plane B")}
    plane_concept = ("113764", "DCM", "Acquisition Plane")
    every = [e for events in events_by_plane.values() for e in events]
    ds = rdsr.projection_report(every, study_uid=study, description="Cerebral angiography")
    single, *items = ds.ContentSequence
    out = [i for i in items if i.ConceptNameCodeSequence[0].CodeMeaning != "Accumulated X-Ray Dose Data"]
    accumulated = [rdsr.container(("113702", "DCM", "Accumulated X-Ray Dose Data"), [
        rdsr.code(plane_concept, planes[name], rel="HAS CONCEPT MOD"),
        rdsr.num(("113722", "DCM", "Dose Area Product Total"), str(sum(Decimal(e.dap) for e in events)),
                 ("Gy.m2", "UCUM", "Gy.m2")),
        rdsr.num(("113725", "DCM", "Dose (RP) Total"), str(sum(Decimal(e.dose_rp) for e in events)),
                 ("Gy", "UCUM", "Gy")),
    ]) for name, events in events_by_plane.items()]
    for item in out:
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Irradiation Event X-Ray Data":
            uid_ = next(c.UID for c in item.ContentSequence if "UID" in c)
            name = next(n for n, events in events_by_plane.items() if any(e.uid == uid_ for e in events))
            item.ContentSequence[0] = rdsr.code(plane_concept, planes[name])
    ds.ContentSequence = [single, *accumulated, *out]
    return rdsr.encode(ds)


def test_the_two_planes_of_a_biplane_system_are_not_added_for_the_kar_thresholds(agent_for):
    """NCRP 168: the reference points of a biplane system's two tubes are on two skin fields; 3 Gy on each
    plane is the first notification (of the larger plane), not 6 Gy with its subsequent level and the SRDL."""
    agent = agent_for()
    study = generate_uid()
    a1, b1 = rdsr.ProjectionEvent(dap="0.010", dose_rp="2.5"), rdsr.ProjectionEvent(dap="0.010", dose_rp="2.0")
    a2, b2 = rdsr.ProjectionEvent(dap="0.002", dose_rp="0.6"), rdsr.ProjectionEvent(dap="0.002", dose_rp="1.2")
    first = agent.send(_biplane({"A": [a1], "B": [b1]}, study)).ingest.alerts
    assert first == []  # Ka,r 2.5 Gy on plane A, 2.0 Gy on plane B (4.5 Gy added)
    second = agent.send(_biplane({"A": [a1, a2], "B": [b1, b2]}, study)).ingest.alerts
    assert [(a.rule, str(a.value)) for a in second] == [("ncrp168-kar-first", "3.2")]  # plane B; A 3.1, added 6.3
    assert "Plane B" in second[0].message and "not added" in second[0].message
    assert not [a for a in agent.alerts() if a.severity == "critical"]


def test_head_series_over_the_aapm_value_through_the_pipeline(agent_for):
    outcome = agent_for().send(rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="80.00", dlp="1200.0")])))
    (alert,) = outcome.ingest.alerts
    assert (alert.kind, alert.rule, alert.exam, str(alert.value)) == (
        "ct_notification_value", "aapm2011-adult-head", "CT head", "80")


def test_every_corpus_object_is_checked_without_a_failing_check(store, tmp_path, corpus, capsys):
    agent = Agent(store, tmp_path, rules_from(f'[checks]\ntables = ["{REPO_CONFIG}/reference-levels/uk-ukhsa-2024-adult-ct.toml"]\n'))
    stored = 0
    for path in sorted(corpus.glob("*.dcm")):
        outcome = agent.pipeline.ingest(path.read_bytes(), "import")
        stored += outcome.status == "stored"
    out = capsys.readouterr().out
    assert stored >= 50 and "check_failed" not in out
    kinds = {a.kind for a in agent.alerts()}
    assert {"modality_dose_check", "fluoro_threshold", "exam_above_drl"} <= kinds
    assert all(a.value is None or a.threshold is None or a.value >= a.threshold for a in agent.alerts())


def test_an_alert_never_quotes_the_patients_identity(agent_for, store):
    """A modality may put the patient's name or birth date into the protocol name, which the
    alert's message quotes: it reached the console and the central site unscrubbed."""
    agent = agent_for()
    patient = rdsr.Patient(name="Smithson^Johanna", id="PID-4711", birth_date="19520314")
    series = rdsr.CTSeries("Johanna Smithson head 14.03.1952", target_region="Head", ctdivol="200.5", dlp="3000")
    outcome = agent.send(rdsr.encode(rdsr.ct_report([series], patient=patient)))
    (alert,) = [a for a in outcome.ingest.alerts if a.kind == "ct_notification_value"]
    assert "200.5" in alert.message and "[removed]" in alert.message  # still says which series and how much
    sent = [row[0] for row in store.db.execute("SELECT body FROM outbox WHERE kind = 'alert'")]
    shown = [a.message for a in agent.alerts()]
    for text in [alert.message, *sent, *shown]:
        assert not any(word in text for word in ("Smithson", "Johanna", "14.03.1952", "PID-4711"))


@pytest.mark.parametrize("phantom, raised", [("body", True), ("head", False)])
def test_a_paediatric_ctdivol_drl_on_the_body_phantom_is_not_compared_with_a_head_phantom_value(
        agent_for, phantom, raised):
    """EU RP 185, chest, 15-30 kg: CTDIvol 2.7 mGy on the 32-cm phantom. A series stated on the 16-cm
    phantom reads about twice as high for the same exposure: it was compared all the same."""
    table = REPO_CONFIG / "reference-levels" / "eu-rp185-2018-paediatric-ct.toml"
    agent = agent_for(f'[checks]\ntables = ["{table}"]\n')
    series = rdsr.CTSeries("Thorax", target_region="Chest", ctdivol="4.0", dlp="80.0", phantom=phantom)
    report = rdsr.ct_report([series], description="CT Chest",
                            patient=rdsr.Patient(age="008Y", weight="20"))
    outcome = agent.send(rdsr.encode(report))
    rules = {a.rule for a in outcome.ingest.alerts if a.kind == "exam_above_drl"}
    assert ("eu-rp185-chest-weight15-30kg-ctdivol" in rules) == raised


def test_an_angiography_report_of_acquisition_runs_only_reaches_the_fluoroscopy_thresholds(agent_for):
    """Four DSA runs, Ka,r 6 Gy in all, no fluoroscopy event: the first notification and the SRDL fire."""
    runs = [rdsr.ProjectionEvent(event_type="Stationary Acquisition", protocol="DSA run", dap="0.005", dose_rp="1.5")
            for _ in range(4)]
    outcome = agent_for().send(rdsr.encode(rdsr.projection_report(runs, description="Cerebral angiography")))
    assert {(a.rule, a.level) for a in outcome.ingest.alerts} >= {
        ("ncrp168-kar-first", "first notification"), ("ncrp168-kar-srdl", "SRDL")}


def test_redaction_leaves_the_alerts_own_words_and_numbers_whole(agent_for):
    """A patient named Head^Patient with id 1000: the alert still says which series, the value and the
    limit; only the report's text that holds the name is redacted."""
    agent = agent_for()
    patient = rdsr.Patient(name="Head^Patient", id="1000", birth_date="19520314")
    study = generate_uid()
    series = [rdsr.CTSeries("Head Patient routine", target_region="Head", ctdivol="600", dlp="9000") for _ in range(2)]
    outcome = agent.send(rdsr.encode(rdsr.ct_report(series, patient=patient, study_uid=study)))
    messages = {a.kind: a.message for a in outcome.ingest.alerts}
    assert "'[removed] routine'" in messages["ct_notification_value"]
    assert "is at or above the notification value 80 mGy" in messages["ct_notification_value"]
    assert "is 1200 mGy, at or above the alert value 1000 mGy" in messages["ct_alert_value"]
    runs = [rdsr.ProjectionEvent(dap="0.01", dose_rp="5.5", exposure_time_ms="600000")]
    srdl = [a for a in agent.send(rdsr.encode(rdsr.projection_report(runs, patient=patient))).ingest.alerts
            if a.level == "SRDL" and a.quantity == "Ka_r"]
    assert srdl and "arrange patient follow-up" in srdl[0].message


def test_an_acknowledgement_leaves_the_box_without_the_patients_identity(agent_for, store):
    """The technologist may type the patient's name, id or birth date into the reason or the note: the
    store keeps what was typed, the acknowledgement queued for the central site does not carry them."""
    import json

    from agent.checks import acknowledge

    agent = agent_for()
    patient = rdsr.Patient(name="Oconnell^Siobhan", id="MRN-0778899", birth_date="19610203")
    series = rdsr.CTSeries("Routine head", target_region="Head", ctdivol="120", dlp="2000")
    (alert,) = [a for a in agent.send(rdsr.encode(rdsr.ct_report([series], patient=patient))).ingest.alerts
                if a.kind == "ct_notification_value"]
    typed = "Siobhan Oconnell (MRN-0778899, born 03.02.1961) is pregnant, scan justified"
    with store.transaction() as tx:
        acknowledge(tx, alert.id, "tech1", typed, note="spoke to Mrs Oconnell")
    (body,) = [json.loads(b) for (b,) in store.db.execute("SELECT body FROM outbox WHERE kind = 'ack'")]
    assert body["by"] == "tech1" and "pregnant, scan justified" in body["reason"]
    for word in ("Siobhan", "Oconnell", "MRN-0778899", "03.02.1961"):
        assert word not in json.dumps(body)
    (kept,) = [a for a in agent.alerts() if a.id == alert.id]
    assert kept.ack["reason"] == typed  # on the box, as typed


def test_a_dose_screen_sent_again_under_a_new_sop_uid_raises_no_series_alert_again(agent_for, corpus):
    """The series of a CT dose screen have no irradiation event UIDs: a screen that came again under a new SOP
    Instance UID had each series checked as a new one, and its notification alerts raised twice."""
    import io

    import pydicom

    agent = agent_for(LOCAL_CHEST)
    first = agent.send(corpus / "CT-SC-Philips_Brilliance16P.dcm")
    assert len([a for a in first.ingest.alerts if a.kind == "ct_notification_value"]) == 3  # 7.2, 11.3, 9.3 mGy
    ds = pydicom.dcmread(corpus / "CT-SC-Philips_Brilliance16P.dcm")
    ds.SOPInstanceUID = generate_uid()
    encoded = io.BytesIO()
    ds.save_as(encoded)
    again = agent.send(encoded.getvalue())
    assert again.ingest.alerts == [] and len(agent.alerts(kind="ct_notification_value")) == 3


def test_an_rdsr_after_its_dose_screen_raises_no_series_alert_again_but_a_new_series_still_alerts(agent_for, corpus):
    """A CT that sends its dose screen and then its RDSR: the screen's three series raised their notification
    warnings, and the RDSR raised them again for the same scans (its series carry event UIDs of their own).
    The technologist is warned once per scan; a scan the screen did not show is still warned of."""
    import pydicom

    agent = agent_for(LOCAL_CHEST)
    screen = agent.send(corpus / "CT-SC-Philips_Brilliance16P.dcm")
    assert len([a for a in screen.ingest.alerts if a.kind == "ct_notification_value"]) == 3  # 7.2, 11.3, 9.3 mGy
    study = pydicom.dcmread(corpus / "CT-SC-Philips_Brilliance16P.dcm", stop_before_pixels=True).StudyInstanceUID
    series = [rdsr.CTSeries(name, "Chest", ctdivol=c, dlp=d, phantom="body") for name, c, d in (
        ("PRE KIDNEYS", "7.20", "196.01"), ("30S KIDNEYS", "11.33", "248.59"), ("100S C/A/P", "9.32", "657.85"),
        ("EXTRA", "12.5", "120.0"))]  # the scan after the screen was made
    report = rdsr.ct_report(series, study_uid=study, station="PHILIPS-E71E3F0", manufacturer="Philips",
                            model="Brilliance 16P")
    outcome = agent.send(rdsr.encode(report))
    assert outcome.ingest.saved.superseded == [screen.ingest.report.sop_instance_uid]
    again = [a for a in outcome.ingest.alerts if a.kind == "ct_notification_value" and a.quantity == "CTDIvol"]
    assert [a.message.split("'")[1] for a in again] == ["EXTRA"]
    assert len(agent.alerts(kind="ct_notification_value")) == 4


MG_VIEWS = """
[checks]
median_window = 3

[[checks.exam]]
exam = "MG any"
modality = "MG"
pattern = "."

[[checks.level]]
id = "site-mg-agd"
kind = "local_DRL"
modality = "MG"
exam = "MG any"
quantity = "AGD"
value = 1
unit = "mGy"
scope = "per_event"
source = "site test value"
evidence = "local"
verified = true
"""


def test_views_of_images_an_rdsr_supersedes_leave_the_rolling_median(agent_for, corpus):
    """An MG room sending its images (AGD in each header) and then the study's RDSR: the images' views stayed in
    the rolling window beside the RDSR's, each exposure twice. Two views made a "median of the last 3 views"
    and raised a median-above-DRL warning; the window now holds the RDSR's views only."""
    import io

    import pydicom

    agent = agent_for(MG_VIEWS)
    agent.send(corpus / "MG-Im-GE_Seno_1_ForPresentation.dcm")
    agent.send(corpus / "MG-Im-GE_Seno_2_ForPresentation.dcm")
    rdsr = pydicom.dcmread(corpus / "MG-RDSR-Hologic_2D.dcm")
    image = pydicom.dcmread(corpus / "MG-Im-GE_Seno_1_ForPresentation.dcm", stop_before_pixels=True)
    rdsr.StudyInstanceUID = image.StudyInstanceUID  # the study's RDSR, from the same unit
    for attr in ("Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "StationName"):
        setattr(rdsr, attr, image.get(attr))
    encoded = io.BytesIO()
    rdsr.save_as(encoded)
    outcome = agent.send(encoded.getvalue())
    assert len(outcome.ingest.saved.superseded) == 2
    assert agent.alerts(kind="median_above_drl") == []
    window = agent.store.db.execute("SELECT value FROM check_samples WHERE quantity = 'AGD' ORDER BY value").fetchall()
    assert window == [("1.28",), ("1.3",)]


def _phantom_meaning(ds, meaning):
    """Write the CTDIw Phantom Type's code meaning as a scanner set up in another language does (the code stays)."""
    for acquisition in ds.ContentSequence:
        for container in getattr(acquisition, "ContentSequence", []):
            for item in getattr(container, "ContentSequence", []):
                if item.ConceptNameCodeSequence[0].CodeValue == "113835":
                    item.ConceptCodeSequence[0].CodeMeaning = meaning
    return ds


@pytest.mark.parametrize("code_meaning", ["IEC Kopf-Dosimetriephantom", "Fantôme de dosimétrie tête CEI"])
def test_a_head_phantom_named_in_another_language_is_still_the_16_cm_phantom(agent_for, code_meaning):
    """AAPM 2011, paediatric torso < 10 y: 25 mGy on the 16-cm phantom, 10 mGy on the 32-cm one. A scanner
    whose code meanings are not in English stated code 113690 (IEC Head Dosimetry Phantom) with its own
    words; the series was read as on the 32-cm phantom and a 12 mGy series raised the 10 mGy notification."""
    series = rdsr.CTSeries("Thorax", target_region="Chest", ctdivol="12.0", dlp="240.0", phantom="head")
    report = _phantom_meaning(rdsr.ct_report([series], description="CT Chest", patient=rdsr.Patient(age="006Y")),
                              code_meaning)
    agent = agent_for()
    outcome = agent.send(rdsr.encode(report))
    assert [a.rule for a in outcome.ingest.alerts if a.kind == "ct_notification_value"] == []
    assert outcome.ingest.report.events[0].phantom == "IEC Head Dosimetry Phantom"
    series = rdsr.CTSeries("Thorax", target_region="Chest", ctdivol="25.0", dlp="500.0", phantom="head")
    report = _phantom_meaning(rdsr.ct_report([series], description="CT Chest", patient=rdsr.Patient(age="006Y")),
                              code_meaning)
    outcome = agent.send(rdsr.encode(report))
    assert [a.rule for a in outcome.ingest.alerts if a.kind == "ct_notification_value"] == [
        "aapm2011-paed-torso-under10-16cm"]
