"""`alara-edge studies` tells what was received but is not yet processed."""
import json
from pathlib import Path

import pytest

from agent.store.inbox import Inbox, path_for
from simulator import rdsr
from tests.conftest import AgentProcess, run_agent, wait_for


def test_objects_waiting_in_the_inbox_are_listed_then_processed_at_start(tmp_path):
    agent = AgentProcess(tmp_path / "a")  # configured; an earlier run accepted two reports and died
    agent.db_path.parent.mkdir(parents=True)
    inbox = Inbox(path_for(agent.db_path))
    for n in range(2):
        inbox.put(rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + n}.5")])), 1.0e9 + n, "dicom")
    inbox.close()
    listing = json.loads(agent.cli("studies", "--json").stdout)
    assert (listing["studies"], listing["waiting"], listing["held"]) == ([], 2, 0)
    assert "2 received object(s) waiting to be processed" in agent.cli("studies").stdout
    assert "held back" not in agent.cli("studies").stdout

    agent.start()
    try:
        def processed():
            listing = json.loads(agent.cli("studies", "--json").stdout)
            return listing if listing["waiting"] == 0 else None

        listing = wait_for(processed, what="the inbox processed")
        assert sum(s["report_count"] for s in listing["studies"]) == 2
        assert '"inbox_recovered"' in agent.log_text()
    finally:
        agent.stop()


@pytest.mark.parametrize("command", ["studies", "alerts", "stats", "staff"])
def test_reading_commands_say_when_there_is_no_store_at_all(tmp_path, command):
    """Run from another directory (default store ./var/...), a command must not just say 'nothing stored'."""
    result = run_agent(command, cwd=tmp_path)
    assert result.returncode == 0
    assert f"no store at {tmp_path.resolve() / 'var' / 'alara-edge.sqlite'}" in result.stderr
    assert "-c CONFIG" in result.stderr
    assert not (tmp_path / "var").exists()  # nothing created


@pytest.mark.parametrize("command", ["studies", "alerts", "stats", "staff", "outbox status"])
@pytest.mark.parametrize("content", [b"", b"not a database at all, but long enough to be read as a header"])
def test_reading_commands_on_a_file_that_is_not_a_store_say_so_in_one_line(tmp_path, command, content):
    """A 0-byte or foreign file at the store's path gave a traceback ("no such table: reports")."""
    store = tmp_path / "var" / "alara-edge.sqlite"
    store.parent.mkdir()
    store.write_bytes(content)
    result = run_agent(*command.split(), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"{store.resolve()} is not an alara-edge store (")
    assert store.read_bytes() == content  # a reading command left it as it was


def test_an_object_held_back_after_three_deaths_is_not_said_to_be_waiting(tmp_path):
    """It is not processed again; if the agent could not set it aside (see the log), the listing
    says so instead of promising that the agent will process it."""
    agent = AgentProcess(tmp_path / "a")
    agent.db_path.parent.mkdir(parents=True)
    inbox = Inbox(path_for(agent.db_path))
    item = inbox.put(rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="40.5")])), 1.0e9, "dicom")
    inbox.put(rdsr.encode(rdsr.ct_report([rdsr.CTSeries("Head", ctdivol="41.5")])), 1.0e9 + 1, "dicom")
    for _ in range(3):
        inbox.taken(item.id)
    inbox.close()
    listing = json.loads(agent.cli("studies", "--json").stdout)
    assert (listing["waiting"], listing["held"]) == (2, 1)
    text = agent.cli("studies").stdout
    assert "1 received object(s) waiting to be processed" in text and "1 received object(s) held back" in text


def test_a_patients_name_written_into_the_description_or_accession_is_not_listed(tmp_path):
    """A modality may copy the patient's name or birth date into free text; `studies` shows the exam
    without them, as the console does (the accession number keeps an id: sites number exams by it)."""
    patient = rdsr.Patient(name="Van-der Berg^Anna Maria", id="00123456", birth_date="19800131")
    report = rdsr.ct_report([rdsr.CTSeries("Head")], patient=patient, accession="Berg Anna",
                            description="CT head Vanderberg 31.01.1980 ID00123456")
    path = tmp_path / "r.dcm"
    path.write_bytes(rdsr.encode(report))
    agent = AgentProcess(tmp_path / "a")
    assert agent.cli("import", str(path)).returncode == 0
    listing = json.loads(agent.cli("studies", "--json").stdout)
    (study,) = listing["studies"]
    assert (study["description"], study["accession_number"]) == ("CT head [removed] [removed] ID[removed]", "[removed] [removed]")
    text = agent.cli("studies").stdout
    assert "Berg" not in text and "Anna" not in text and "1980" not in text and "CT head [removed]" in text


def test_mammography_and_nuclear_medicine_studies_show_their_dose(tmp_path):
    """The text listing showed no dose at all for MG (AGD) or PET/NM (administered activity)."""
    from tests.conftest import CORPUS

    agent = AgentProcess(tmp_path / "a")
    assert agent.cli("import", str(CORPUS / "MG-RDSR-Hologic_2D.dcm"), str(CORPUS / "NM-RRDSR-Siemens.dcm")).returncode == 0
    lines = agent.cli("studies").stdout.splitlines()
    assert any(" MG " in line and line.endswith("AGD L mGy 1.3  AGD R mGy 1.28") for line in lines), lines
    assert any(" PT " in line and line.endswith("activity MBq 394") for line in lines), lines


def test_every_failed_receipt_is_counted_and_a_limit_must_be_positive(tmp_path):
    """60 rejected objects were listed as '50 received object(s) could not be stored'; --limit 0 listed everything."""
    import pydicom
    from pydicom.uid import generate_uid

    from tests.conftest import CORPUS

    folder = tmp_path / "in"
    folder.mkdir()
    ds = pydicom.dcmread(CORPUS / "ESR_non-dose.dcm")
    for n in range(60):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{n}.dcm")
    agent = AgentProcess(tmp_path / "a")
    agent.cli("import", str(folder))
    assert "60 received object(s) could not be stored as reports (kept for inspection) (the newest 50):" \
        in agent.cli("studies").stdout
    listing = json.loads(agent.cli("studies", "--json").stdout)
    assert (listing["failed_count"], len(listing["failed"])) == (60, 50)
    for command in ("studies", "alerts"):
        refused = agent.cli(command, "--limit", "0")
        assert refused.returncode == 2 and "give 1 or more" in refused.stderr


@pytest.mark.parametrize("quarter", ["0000Q1", "9999Q4"])
def test_a_quarter_in_no_real_year_is_refused_by_staff(tmp_path, quarter):
    """`staff --quarter 0000Q1` ended in a traceback (year 0 is out of range)."""
    result = run_agent("staff", "--quarter", quarter, cwd=tmp_path)
    assert result.returncode == 2 and "a quarter looks like 2026Q4" in result.stderr and "Traceback" not in result.stderr
