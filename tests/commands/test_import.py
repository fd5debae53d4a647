"""`alara-edge import`: a department's backfill takes the same path as a C-STORE."""
import json
import shutil
import sqlite3

import pytest

from tests.conftest import CORPUS, AgentProcess

FILES = ["CT-RDSR-Siemens-Multi-1.dcm", "CT-RDSR-Siemens-Multi-2.dcm", "CT-RDSR-Siemens-Multi-3.dcm",
         "RF-RDSR-Siemens-Zee.dcm", "ESR_non-dose.dcm"]


def copy_files(folder):
    folder.mkdir()
    for name in FILES:
        shutil.copy(CORPUS / name, folder / name)
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_import_when_the_agent_is_not_running(tmp_path):
    agent = AgentProcess(tmp_path / "a")  # configured, never started
    src = copy_files(tmp_path / "export")
    r = agent.cli("import", str(src), "--json")
    assert r.returncode == 0, r.stderr
    statuses = {json.loads(l)["file"].rsplit("/", 1)[-1]: json.loads(l)["status"] for l in r.stdout.splitlines()}
    assert statuses == {"CT-RDSR-Siemens-Multi-1.dcm": "stored", "CT-RDSR-Siemens-Multi-2.dcm": "stored",
                        "CT-RDSR-Siemens-Multi-3.dcm": "stored", "RF-RDSR-Siemens-Zee.dcm": "stored",
                        "ESR_non-dose.dcm": "rejected", "notes.txt": "error"}
    again = agent.cli("import", str(src), "--json")
    assert {json.loads(l)["status"] for l in again.stdout.splitlines() if "Siemens" in l} == {"duplicate"}
    listing = json.loads(agent.cli("studies", "--json").stdout)
    assert len(listing["studies"]) == 2
    with sqlite3.connect(agent.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM reports WHERE superseded_by IS NULL").fetchone()[0] == 2


def test_import_while_the_agent_runs_goes_through_its_scp(agent_process, tmp_path):
    agent = agent_process()
    src = copy_files(tmp_path / "export")
    r = agent.cli("import", str(src / "RF-RDSR-Siemens-Zee.dcm"))
    assert r.returncode == 0, r.stderr
    assert "sending 1 file(s) to it by C-STORE" in r.stderr
    assert '"calling_ae": "ALARA_IMPORT"' in agent.log_text()
    with sqlite3.connect(agent.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1
    # a PACS export folder holds other files too: each gets its line, the rest is sent
    r = agent.cli("import", str(src), "--json")
    assert "Traceback" not in r.stderr
    statuses = {json.loads(l)["file"].rsplit("/", 1)[-1]: json.loads(l)["status"] for l in r.stdout.splitlines()}
    # each file says what the agent made of it, as an import with the agent stopped does
    assert statuses == {"CT-RDSR-Siemens-Multi-1.dcm": "stored", "CT-RDSR-Siemens-Multi-2.dcm": "stored",
                        "CT-RDSR-Siemens-Multi-3.dcm": "stored", "RF-RDSR-Siemens-Zee.dcm": "duplicate",
                        "ESR_non-dose.dcm": "rejected", "notes.txt": "error"}
    assert "1 duplicate, 1 error, 1 rejected, 3 stored" in r.stderr
    again = agent.cli("import", str(src / "ESR_non-dose.dcm"), str(src / "CT-RDSR-Siemens-Multi-3.dcm"))
    assert again.stdout.splitlines()[0].startswith("rejected ") and "set aside when received before" in again.stdout
    assert again.stdout.splitlines()[1].startswith("duplicate ")


def test_import_reaches_an_agent_bound_to_one_address(agent_process, tmp_path):
    agent = agent_process('[dicom]\nbind = "127.0.0.2"\n')  # e.g. the modality network's interface only
    src = copy_files(tmp_path / "export")
    r = agent.cli("import", str(src / "RF-RDSR-Siemens-Zee.dcm"))
    assert r.returncode == 0, r.stderr
    assert "on 127.0.0.2 port" in r.stderr
    with sqlite3.connect(agent.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1


def test_import_says_what_to_do_when_the_agent_takes_only_its_modalities(agent_process, tmp_path):
    agent = agent_process('[dicom]\nallowed_calling_aes = ["CT_ROOM_1"]\n')
    src = copy_files(tmp_path / "export")
    r = agent.cli("import", str(src / "RF-RDSR-Siemens-Zee.dcm"))
    assert r.returncode == 1
    assert 'add "ALARA_IMPORT" to [dicom] allowed_calling_aes' in r.stderr and "Traceback" not in r.stderr
    with sqlite3.connect(agent.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 0


def test_the_log_never_names_an_imported_file(tmp_path):
    """PACS exports are often named after the patient: the file name is printed for the user, not logged."""
    agent = AgentProcess(tmp_path / "a")
    (tmp_path / "export").mkdir()
    named = tmp_path / "export" / "SMITHSON_JOHANNA_19520314.dcm"
    shutil.copy(CORPUS / "ESR_non-dose.dcm", named)  # rejected: logged as report_rejected
    r = agent.cli("import", str(named), "--json")
    assert json.loads(r.stdout)["status"] == "rejected"
    assert '"report_rejected"' in r.stderr and "SMITHSON" not in r.stderr


def test_a_mistyped_path_is_an_error_and_the_others_are_imported(tmp_path):
    """`import /no/such/file.dcm` said "1 error" and exited 0, as a script's success."""
    agent = AgentProcess(tmp_path / "a")
    r = agent.cli("import", str(tmp_path / "no-such.dcm"), str(CORPUS / "RF-RDSR-Siemens-Zee.dcm"))
    assert r.returncode == 1
    assert f"alara-edge import: {tmp_path / 'no-such.dcm'}: no such file or directory" in r.stderr
    assert "stored" in r.stdout and "Traceback" not in r.stderr
    assert agent.cli("import", str(tmp_path / "no-such.dcm")).returncode == 1


def test_an_export_folder_with_symbolic_links_is_imported_and_a_dangling_link_is_reported(tmp_path):
    """A folder linked into the export was skipped without a word (Path.rglob does not follow links), so a
    backfill was silently incomplete; a link that leads nowhere was skipped as well."""
    agent = AgentProcess(tmp_path / "a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(CORPUS / "RF-RDSR-Siemens-Zee.dcm", elsewhere / "rf.dcm")
    export = tmp_path / "export"
    (export / "ct").mkdir(parents=True)
    shutil.copy(CORPUS / "CT-RDSR-Siemens-Multi-1.dcm", export / "ct" / "ct.dcm")
    (export / "rf").symlink_to(elsewhere)
    (export / "ct" / "up").symlink_to("..")  # a loop: each real folder is read once
    (export / "gone.dcm").symlink_to(tmp_path / "no-such.dcm")
    r = agent.cli("import", str(export), "--json")
    statuses = {json.loads(l)["file"].removeprefix(str(export) + "/"): json.loads(l)["status"] for l in r.stdout.splitlines()}
    assert statuses == {"ct/ct.dcm": "stored", "rf/rf.dcm": "stored", "gone.dcm": "error"}


def test_a_rooms_images_and_its_rdsr_count_each_exposure_once(tmp_path):
    """A DX room that sends its images (dose in each header) and its RDSR for one study: the study's
    DAP was the two summed. The RDSR's stated total (5.81 µGy·m², 5 exposures) counts, in either order."""
    import pydicom

    for order in ("images first", "rdsr first"):
        folder = tmp_path / order.replace(" ", "-")
        folder.mkdir()
        rdsr = pydicom.dcmread(CORPUS / "DX-RDSR-Carestream_DRXEvolution.dcm")
        image = pydicom.dcmread(CORPUS / "DX-Im-Carestream_DRX.dcm")
        image.StudyInstanceUID = rdsr.StudyInstanceUID  # one study of one room
        image.Manufacturer, image.ManufacturerModelName = "CARESTREAM HEALTH", "DRX-Evolution"
        image.DeviceSerialNumber, image.StationName = rdsr.DeviceSerialNumber, rdsr.StationName
        names = ["a.dcm", "b.dcm"] if order == "images first" else ["b.dcm", "a.dcm"]
        image.save_as(folder / names[0])
        rdsr.save_as(folder / names[1])
        agent = AgentProcess(tmp_path / f"agent-{names[0]}")
        for name in sorted(names):  # one import each: received in this order
            assert agent.cli("import", str(folder / name)).returncode == 0
        (study,) = json.loads(agent.cli("studies", "--json").stdout)["studies"]
        assert study["totals"]["dap_total_Gym2"] == 5.8099997e-06, order
        assert study["totals"]["reports"] == 1 and study["report_count"] == 2


def test_a_study_done_in_two_rooms_keeps_both_rooms_doses(tmp_path):
    """A mobile unit's image and another room's RDSR under one Study Instance UID: not the same exposures."""
    import pydicom

    rdsr = pydicom.dcmread(CORPUS / "DX-RDSR-Carestream_DRXEvolution.dcm")
    image = pydicom.dcmread(CORPUS / "DX-Im-Carestream_DRX.dcm")  # a DRX-Revolution, serial 001829
    image.StudyInstanceUID = rdsr.StudyInstanceUID
    image.save_as(tmp_path / "image.dcm")
    agent = AgentProcess(tmp_path / "agent")
    assert agent.cli("import", str(tmp_path / "image.dcm"), str(CORPUS / "DX-RDSR-Carestream_DRXEvolution.dcm")
                     ).returncode == 0
    (study,) = json.loads(agent.cli("studies", "--json").stdout)["studies"]
    assert study["totals"]["dap_total_Gym2"] == pytest.approx(5.8099997e-06 + 6.33e-06)
    assert study["totals"]["reports"] == 2
