"""The running daemon end to end: a report by DICOM raises its alert; SIGHUP reloads rules safely."""
import json
import sqlite3
import subprocess
import sys
import signal
import threading
import time
from pathlib import Path

import pytest

from agent.sources.dicom.scu import send
from simulator import rdsr
from tests.conftest import REPO, agent_env, damage_inbox, free_port, run_agent, wait_for


def studies(agent):
    r = agent.cli("studies", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["studies"]


def alerts(agent):
    r = agent.cli("alerts", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_high_ct_head_dose_by_dicom_raises_the_notification_value_alert(agent_process):
    agent = agent_process()
    series = rdsr.CTSeries("Routine Head", target_region="Head", ctdivol="120.5", dlp="2410")
    assert send([rdsr.ct_report([series])], "127.0.0.1", agent.dicom_port) == [0]
    (alert,) = [a for a in alerts(agent) if a["kind"] == "ct_notification_value"]
    assert alert["value"] == 120.5 and alert["threshold"] == 80 and alert["unit"] == "mGy"
    assert alert["acknowledged"] is False and "AAPM" in alert["source"]


def stored_alerts(agent):
    with sqlite3.connect(agent.db_path) as db:
        return [dict(zip(("kind", "rule"), row)) for row in db.execute("SELECT kind, rule FROM alerts")]


def test_sighup_with_a_bad_table_keeps_the_rules_and_a_good_one_applies(agent_process, tmp_path):
    table = tmp_path / "local.toml"
    table.write_text("")
    agent = agent_process(f'[checks]\ntables = ["{table}"]\n')
    good = (REPO / "config" / "local-drl.example.toml").read_text()
    table.write_text(good.replace('unit = "mGy"', 'unit = "furlongs"', 1))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"reload_failed"' in agent.log_text(), 2)  # at once, not at the next 5-s health check
    assert agent.proc.poll() is None
    (failed,) = [e for e in agent.log_events() if e["event"] == "reload_failed"]
    assert any("furlongs" in problem for problem in failed["problems"])  # why, in the JSON line itself
    for line in agent.log_text().splitlines():
        json.loads(line)  # nothing printed outside the JSON log
    head = rdsr.CTSeries("Routine Head", target_region="Head", ctdivol="85", dlp="1700")
    send([rdsr.ct_report([head])], "127.0.0.1", agent.dicom_port)
    kinds = {a["kind"] for a in stored_alerts(agent)}
    assert "ct_notification_value" in kinds and "exam_above_drl" not in kinds  # previous rules, still active

    table.write_text(good)
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"rules_reloaded"' in agent.log_text(), 10)
    assert '"reload_restart_needed"' not in agent.log_text()  # only the rules changed
    send([rdsr.ct_report([rdsr.CTSeries("Routine Head", target_region="Head", ctdivol="60", dlp="1700")])],
         "127.0.0.1", agent.dicom_port)
    assert {"kind": "exam_above_drl", "rule": "local-ct-head-dlp"} in stored_alerts(agent)


def test_sighup_with_a_config_saved_as_latin_1_keeps_the_agent_running(agent_process):
    """`systemctl reload` after an editor saved a comment as Latin-1: reload_failed, not a dead agent
    that systemd then cannot restart either."""
    agent = agent_process()
    text = agent.config_path.read_text()
    agent.config_path.write_bytes(text.encode() + "# R\u00f6ntgen 2\n".encode("latin-1"))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"reload_failed"' in agent.log_text(), 5)
    assert agent.proc.poll() is None
    (failed,) = [e for e in agent.log_events() if e["event"] == "reload_failed"]
    assert failed["problems"] == [f"line {text.count(chr(10)) + 1}: not UTF-8 text (byte 0xf6): save the file as UTF-8"]
    checked = run_agent("check-config", str(agent.config_path))
    assert checked.returncode == 1 and "not UTF-8 text" in checked.stderr and "Traceback" not in checked.stderr
    agent.config_path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # a byte order mark (Notepad) is fine
    assert run_agent("check-config", str(agent.config_path)).returncode == 0


def test_sighup_says_which_changed_sections_wait_for_a_restart(agent_process):
    agent = agent_process()
    text = agent.config_path.read_text()
    agent.config_path.write_text(text.replace("[dicom]\n", "[dicom]\nmax_associations = 3\n", 1))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"reload_restart_needed"' in agent.log_text(), 10)
    (event,) = [e for e in agent.log_events() if e.get("event") == "reload_restart_needed"]
    assert event["sections"] == ["dicom"] and agent.proc.poll() is None


def test_dap_meter_on_a_serial_line_raises_fluoro_alerts_in_the_running_agent(agent_process, tmp_path):
    scenario = tmp_path / "fast.toml"
    scenario.write_text('driver = "diamentor"\nafter = "idle"\n[device]\nunit = 1\n'
                        '[[phase]]\nduration_s = 1\nrate = 0.0\n[[phase]]\nduration_s = 5\nrate = 110.0\n')
    link = tmp_path / "ttyDAP"
    sim = subprocess.Popen([sys.executable, "-m", "simulator.serial", "diamentor", "--link", str(link),
                            "--scenario", str(scenario)], cwd=REPO, env=agent_env())
    try:
        wait_for(link.exists, 15)
        agent = agent_process(f'[[serial]]\ndriver = "diamentor"\nport = "{link}"\ndevice = "dap-1"\n'
                              'poll_interval_s = 0.1\n')
        wait_for(lambda: {"fluoro_threshold"} <= {a["kind"] for a in stored_alerts(agent)}, 30)
        with sqlite3.connect(agent.db_path) as db:
            levels = [r[0] for r in db.execute("SELECT level FROM alerts WHERE kind = 'fluoro_threshold' ORDER BY rowid")]
        assert levels[0] == "first notification"
    finally:
        sim.terminate()
        sim.wait(10)


def _start_failure(result) -> dict:
    """The one error event of an agent that could not start (and no traceback)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "agent_start_failed"]
    assert len(failed) == 1, events
    return failed[0]


def test_a_second_agent_on_the_same_store_says_so_and_exits(agent_process):
    first = agent_process()
    config = first.workdir / "second.toml"
    config.write_text(first.config_path.read_text().replace(str(first.dicom_port), str(first.dicom_port + 1))
                      .replace(f"port = {first.console_port}", "enabled = false"))
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert "open for writing by another process" in failed["error"]


def test_a_taken_dicom_port_says_which_and_exits(agent_process, tmp_path):
    first = agent_process()
    config = tmp_path / "other.toml"
    config.write_text(first.config_path.read_text().replace(str(first.workdir / "var"), str(tmp_path / "var"))
                      .replace(f"port = {first.console_port}", "enabled = false"))
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert f"DICOM port 127.0.0.1:{first.dicom_port}" in failed["error"] and "in use" in failed["error"]


def test_a_store_path_that_cannot_be_created_says_so_and_exits(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    config = tmp_path / "alara-edge.toml"
    config.write_text(f'[store]\npath = "{blocker / "agent.sqlite"}"\n[dicom]\nenabled = false\n'
                      f'[mqtt]\nenabled = false\n[console]\nenabled = false\n')
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert str(blocker) in failed["error"]  # "File exists: …/not-a-folder": the path to look at


def test_an_inbox_that_cannot_be_opened_says_so_and_exits(tmp_path):
    (tmp_path / "var" / "agent-inbox.sqlite").mkdir(parents=True)  # a folder where the inbox file should be
    config = tmp_path / "alara-edge.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "var" / "agent.sqlite"}"\n[dicom]\nenabled = false\n'
                      f'[mqtt]\nenabled = false\n[console]\nenabled = false\n')
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert "unable to open database file" in failed["error"]


def test_an_inhand_file_that_cannot_be_opened_names_it_and_exits(tmp_path):
    """The file naming the object in hand (beside the inbox) was reported as a port that could not be bound
    ("cannot listen: Is a directory", is another agent running?), without its name."""
    (tmp_path / "var" / "agent-inbox.sqlite-inhand").mkdir(parents=True)  # (one left unwritable: the same)
    config = tmp_path / "alara-edge.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "var" / "agent.sqlite"}"\n[dicom]\nenabled = false\n'
                      f'[mqtt]\nenabled = false\n[console]\nenabled = false\n')
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert "agent-inbox.sqlite-inhand" in failed["error"] and "listen" not in failed["error"]


def test_a_damaged_inbox_is_set_aside_and_the_objects_it_held_are_stored(agent_process, tmp_path):
    """A power cut on an SD card that acknowledged writes it had not made can damage the inbox, which holds
    objects answered Success and not yet processed: the agent must not stop at every start (systemd would
    restart it for ever, and no modality could send), nor lose what can still be read from it."""
    from agent.store.inbox import Inbox

    inbox_file = tmp_path / "agent" / "var" / "agent-inbox.sqlite"
    inbox_file.parent.mkdir(parents=True)
    reports = [rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + i}.5")]) for i in range(3)]
    inbox = Inbox(inbox_file)  # what a run killed before processing them left
    for ds in reports:
        inbox.put(rdsr.encode(ds), time.time(), "dicom", calling_ae="CT1")
    inbox.taken(1)
    inbox.close()
    damage_inbox(inbox_file)

    agent = agent_process()
    wait_for(lambda: len(studies(agent)) == 3, what="the three reports the damaged inbox held")
    (line,) = [e for e in agent.log_events() if e["event"] == "inbox_quarantined"]
    assert line["level"] == "error" and line["objects_recovered"] == 3 and line["objects_unreadable"] == 0
    assert Path(line["moved_to"]).exists() and "hint" in line
    assert send([reports[0]], "127.0.0.1", agent.dicom_port) == [0]  # and it goes on receiving


def test_a_rollback_onto_a_store_a_newer_version_migrated_says_so_and_exits(tmp_path):
    """A rollback (venv.previous) started on a store an upgrade had migrated: `run` said only "Cannot operate on
    a closed database." (the refusal closed the store inside the block watching its progress for systemd), not
    the "written by a newer alara-edge" the README tells hospital IT to look for, with what to do."""
    from agent.store import Store

    path = tmp_path / "var" / "agent.sqlite"
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 'x')")
    config = tmp_path / "alara-edge.toml"
    config.write_text(f'[store]\npath = "{path}"\n[dicom]\nenabled = false\n'
                      f'[mqtt]\nenabled = false\n[console]\nenabled = false\n')
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert "written by a newer alara-edge (migrations [999]" in failed["error"]
    assert "restore the store's backup" in failed["error"]


def test_an_unexpected_fault_at_start_ends_in_one_json_line_and_exit_code_1(tmp_path):
    """Whatever fails while the agent is assembled, the journal gets one `agent_start_failed` JSON
    line (with the traceback inside it) and systemd an exit code, not a bare Python traceback."""
    code = ("import argparse, sys\n"
            "from agent import daemon\n"
            "def broken(*_args, **_kwargs):\n"
            "    raise RuntimeError('a fault of ours')\n"
            "daemon.Agent = broken\n"
            "sys.exit(daemon.run(argparse.Namespace(config=None, demo=False, demo_interval=10.0)))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=agent_env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and r.stderr == ""
    (line,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert line["event"] == "agent_start_failed" and line["error"] == "RuntimeError: a fault of ours"
    assert "Traceback" in line["exception"]


def _own_tmpfs_at(folder):
    """preexec_fn: the agent in a mount namespace of its own with a tmpfs at ``folder``, which the test can
    remount read-only, as the kernel does an SD card's after I/O errors, while no file on it is open."""
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)

    def setup():
        ms_rec, ms_private, clone_newns = 0x4000, 0x40000, 0x20000
        if (libc.unshare(clone_newns) or libc.mount(None, b"/", None, ms_rec | ms_private, None)
                or libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", 0, b"size=64m")):
            raise OSError(ctypes.get_errno(), "unshare or mount")
    return setup


def test_a_full_disk_at_start_is_named_as_such(tmp_path):
    """A store on a full disk could not even be checked at start: the one line said "disk I/O error", which
    sent hospital IT looking for a failing card, not for the log file that had filled the disk."""
    import os
    import shutil

    from agent.store import Store

    var = tmp_path / "var"
    var.mkdir()
    Store.open(tmp_path / "made" / "agent.sqlite").close()
    mount = _own_tmpfs_at(var)

    def full_disk():  # the agent's own tmpfs, holding its store, then filled to the last byte
        mount()
        shutil.copy(tmp_path / "made" / "agent.sqlite", var / "agent.sqlite")
        with open(var / "filler", "wb", buffering=0) as f:
            for size in (1 << 20, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError:
                    pass

    config = tmp_path / "alara-edge.toml"
    config.write_text(f'[store]\npath = "{var / "agent.sqlite"}"\n[dicom]\nenabled = false\n'
                      f'[mqtt]\nenabled = false\n[console]\nenabled = false\n')
    try:
        result = run_agent("run", "-c", str(config), timeout=60, preexec_fn=full_disk)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"no mount namespace here: {exc}")
    if "unshare or mount" in result.stderr:
        pytest.skip("no mount namespace here")
    failed = _start_failure(result)
    assert f"cannot check {var / 'agent.sqlite'}" in failed["error"]
    assert "the disk is full" in failed["error"], failed["error"]


def test_a_spool_whose_file_system_turns_read_only_is_reported_and_its_objects_wait(agent_process, tmp_path):
    """A transaction that writes nothing, the old health check, succeeds whatever the disk: /healthz said ok
    and C-ECHO success on a read-only file system until objects stopped being processed.  Now the health
    check asks the file system; what arrives waits in the inbox and is processed once the disk is back."""
    import shutil
    import urllib.error
    import urllib.request

    from agent.sources.dicom.scu import echo

    if not shutil.which("nsenter"):
        pytest.skip("nsenter (util-linux) is not installed")
    spool = tmp_path / "agent" / "var" / "spool"
    spool.mkdir(parents=True)
    try:
        agent = agent_process(preexec_fn=_own_tmpfs_at(spool))
    except (RuntimeError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no mount namespace here: {exc}")

    def healthz():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{agent.console_port}/healthz", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def remount(mode):
        subprocess.run(["nsenter", "-t", str(agent.proc.pid), "-m", "mount", "-o", f"remount,{mode}", str(spool)],
                       check=True)

    assert send([rdsr.ct_report([rdsr.CTSeries("Head")])], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: agent.log_text().count('"report_stored"') == 1, 20)
    assert healthz()[0] == 200 and echo("127.0.0.1", agent.dicom_port) == 0
    remount("ro")
    status, health = healthz()
    assert status == 503 and health["parts"]["store"]["ok"] is False
    assert str(spool) in health["parts"]["store"]["detail"] and "read-only" in health["parts"]["store"]["detail"]
    assert echo("127.0.0.1", agent.dicom_port) == 0x0110  # a modality's "test connection" says it would fail
    wait_for(lambda: '"agent_unhealthy"' in agent.log_text(), 15)  # the journal says why
    time.sleep(6)  # a second health check with the same problem: no second line (was one every 5 s)
    answered = []
    sender = threading.Thread(target=lambda: answered.extend(
        send([rdsr.ct_report([rdsr.CTSeries("Chest")])], "127.0.0.1", agent.dicom_port)))
    sender.start()
    wait_for(lambda: '"processing_stalled"' in agent.log_text(), 20)  # accepted into the inbox, waiting
    remount("rw")
    sender.join(30)
    assert answered == [0]
    wait_for(lambda: agent.log_text().count('"report_stored"') == 2, 30)
    assert healthz()[0] == 200
    wait_for(lambda: '"agent_healthy_again"' in agent.log_text(), 15)  # and says when it is over
    assert agent.log_text().count('"agent_unhealthy"') == 1


def test_a_store_damaged_while_running_keeps_what_arrives_for_a_restart_that_sets_the_file_aside(agent_process):
    """The store's file damaged under a running agent ("database disk image is malformed"): the reports that
    arrive must not be set aside as unreadable objects (they were readable; after the restart that moves the
    damaged file aside they were in no store), and the agent must say it needs that restart (the watchdog's)."""
    agent = agent_process()
    assert send([rdsr.ct_report([rdsr.CTSeries("Head")]) for _ in range(3)], "127.0.0.1", agent.dicom_port) == [0] * 3
    with sqlite3.connect(agent.db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()
    with open(agent.db_path, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(b"\x5a" * 4096)
    later = [rdsr.ct_report([rdsr.CTSeries("Chest", target_region="Chest")]) for _ in range(2)]
    assert send(later, "127.0.0.1", agent.dicom_port) == [0, 0]  # durable in the inbox
    unhealthy = wait_for(lambda: [e for e in agent.log_events() if e["event"] == "agent_unhealthy"], 20,
                         what="the agent saying it is unhealthy")
    assert "damaged" in " ".join(unhealthy[0]["problems"]), unhealthy
    agent.stop()
    agent.log_path.unlink()
    agent.start()  # as the watchdog's restart does: the damaged file is moved aside
    assert [e for e in agent.log_events() if e["event"] == "store_quarantined"]
    wait_for(lambda: len(studies(agent)) == 2, what="the two reports sent after the damage")
    assert not list((agent.workdir / "var" / "failed").glob("*"))


def test_a_store_set_aside_as_damaged_says_how_to_bring_its_reports_back_and_that_works(agent_process):
    """At start a damaged store is moved aside and a new one begins: alara-edge studies then lists none of the
    reports received before.  The error line says how to get them back, from the spool that still holds them."""
    agent = agent_process()
    before = [rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + i}.5")]) for i in range(4)]
    assert send(before, "127.0.0.1", agent.dicom_port) == [0] * 4
    agent.stop()
    with open(agent.db_path, "r+b") as f:
        f.seek(2 * 4096)
        f.write(b"\x5a" * 3 * 4096)
    agent.log_path.unlink()
    agent.start()
    (line,) = [e for e in agent.log_events() if e["event"] == "store_quarantined"]
    assert studies(agent) == []
    spool = str(agent.workdir / "var" / "spool")
    assert f"alara-edge import {spool}" in line["hint"], line
    r = agent.cli("import", spool)  # as the hint says, with the agent running
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(studies(agent)) == 4


def test_an_empty_console_token_file_is_caught_by_check_config_and_stops_run_in_one_line(tmp_path):
    """An empty token file passed check-config ("ok"), then `run` failed with a ValueError traceback."""
    (tmp_path / "token").write_text("")
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "a.sqlite"}"\nspool_dir = "{tmp_path / "spool"}"\n\n'
                      f'[dicom]\nport = {free_port()}\n\n[mqtt]\nenabled = false\n\n'
                      f'[console]\nport = {free_port()}\ntoken_file = "{tmp_path / "token"}"\n')
    checked = run_agent("check-config", str(config))
    assert checked.returncode == 1
    assert f"console.token_file (line 13): {tmp_path / 'token'}: the token must have at least 4 characters" in checked.stderr
    failed = _start_failure(run_agent("run", "-c", str(config), timeout=60))
    assert failed["error"].startswith("[console] token_file:") and "at least 4 characters" in failed["error"]


def test_a_routers_forwarded_images_leave_failed_after_their_retention_and_leave_studies(agent_process):
    """A CT slice a router forwarded is kept (its header) and listed; once older than
    rejected_retention_days the running agent deletes it and `studies` no longer counts it."""
    import io
    from pathlib import Path

    import pydicom

    from tests.test_pipeline import ct_slice

    agent = agent_process("[store]\nrejected_retention_days = 2\n")
    assert send([pydicom.dcmread(io.BytesIO(ct_slice(1)))], "127.0.0.1", agent.dicom_port) == [0]
    wait_for(lambda: json.loads(agent.cli("studies", "--json").stdout)["failed_count"] == 1, what="the rejected slice")
    (kept,) = [f["path"] for f in json.loads(agent.cli("studies", "--json").stdout)["failed"]]
    assert Path(kept).exists()
    assert agent.stop() == 0
    with sqlite3.connect(agent.db_path) as db:  # three days later
        db.execute("UPDATE receipts SET received_at = '2020-01-01T00:00:00.000000Z'")
    agent.start()
    wait_for(lambda: any(e["event"] == "rejected_pruned" for e in agent.log_events()), what="the prune")
    assert not Path(kept).exists()
    assert json.loads(agent.cli("studies", "--json").stdout)["failed_count"] == 0
