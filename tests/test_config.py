"""Configuration validation as an installer meets it: `alara-edge check-config`."""
import tomllib
from pathlib import Path

from agent.config import Config, check_text
from tests.conftest import REPO, run_agent


def test_no_config_gives_the_documented_defaults():
    cfg = Config()
    assert (cfg.dicom.port, cfg.dicom.ae_title) == (11112, "ALARA_EDGE")
    assert cfg.store.path == Path("var/alara-edge.sqlite")
    assert (cfg.console.bind, cfg.console.port) == ("127.0.0.1", 8377)


def test_every_problem_is_reported_with_key_and_line():
    text = '[station]\nsite = "a b"\n\n[dicom]\nport = 70000\nae_title = "THIS_TITLE_IS_FAR_TOO_LONG"\ncolour = "red"\n'
    problems = check_text(text)
    assert any(p.startswith("station.site (line 2)") for p in problems)
    assert any(p.startswith("dicom.port (line 5)") for p in problems)
    assert any(p.startswith("dicom.ae_title (line 6)") for p in problems)
    assert any(p == "dicom.colour (line 7): unknown key" for p in problems)
    assert len(problems) == 4


def test_toml_syntax_error_is_reported():
    (problem,) = check_text("[dicom\nport = 1\n")
    assert problem.startswith("TOML syntax") and "line 1" in problem


def test_check_config_command_exit_codes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nquota_mb = -5\n")
    r = run_agent("check-config", str(bad))
    assert r.returncode == 1 and "store.quota_mb (line 2)" in r.stderr
    r = run_agent("check-config", str(REPO / "config" / "alara-edge.example.toml"))
    assert r.returncode == 0, r.stderr


def test_what_would_stop_the_agent_at_start_is_caught_by_check_config():
    """An unknown time zone and two dosimeters under one device id once passed check-config and
    then stopped `run` with a traceback."""
    text = ('[station]\ntimezone = "Europe/Atlantis"\n\n'
            '[[serial]]\ndriver = "diamentor"\nport = "/dev/ttyUSB0"\n\n'
            '[[serial]]\ndriver = "diamentor"\nport = "/dev/serial/by-id/ttyUSB0"\n')
    problems = check_text(text)
    assert any(p.startswith("station.timezone (line 2)") and "Europe/Atlantis" in p for p in problems)
    assert any(p.startswith("serial (line 8)") and "ttyUSB0" in p for p in problems)
    assert len(problems) == 2
    fixed = text.replace("Europe/Atlantis", "Europe/Zurich").replace('port = "/dev/serial', 'device = "dap-2"\nport = "/dev/serial')
    assert check_text(fixed) == []


def test_a_port_written_into_an_address_is_caught_by_check_config():
    """`bind = "0.0.0.0:11112"` passed check-config, then `run` failed with a hint about another agent."""
    problems = check_text('[dicom]\nbind = "0.0.0.0:11112"\n\n[console]\nbind = "http://127.0.0.1"\n')
    assert any(p.startswith("dicom.bind (line 2)") and "the port is a key of its own" in p for p in problems)
    assert any(p.startswith("console.bind (line 5)") for p in problems)
    assert check_text('[dicom]\nbind = "::"\n\n[console]\nbind = "localhost"\n') == []


def test_ae_titles_and_broker_hosts_that_would_fail_later_are_caught_by_check_config():
    """A tab or a non-ASCII letter in an AE title passed check-config and stopped `run` with a traceback; a
    broker written as a URL passed too, and the agent then retried "Name or service not known" for ever."""
    problems = check_text('[dicom]\nae_title = "CT\\tEDGE"\nallowed_calling_aes = ["\u00c4RZTE_CT"]\n\n'
                          '[mqtt]\nhost = "mqtts://broker.example:8883"\n')
    assert any(p.startswith("dicom.ae_title (line 2)") and "printable ASCII" in p for p in problems)
    assert any(p.startswith("dicom.allowed_calling_aes (line 3)") for p in problems)
    assert any(p.startswith("mqtt.host (line 6)") and "the port is a key of its own" in p for p in problems)
    assert check_text('[dicom]\nae_title = "CT_EDGE 1"\n\n[mqtt]\nhost = "broker.example"\n') == []


def test_check_config_names_a_file_the_agent_would_not_find_at_start(tmp_path):
    """Missing certificate, password and token files passed check-config; `run` then failed, or the uplink
    retried "[Errno 2] No such file or directory" for ever without naming the file."""
    from tests.conftest import run_agent

    (tmp_path / "pw").write_text("secret\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nca_file = "{tmp_path / "ca.pem"}"\npassword_file = "{tmp_path / "pw"}"\nusername = "ct"\n\n'
                      f'[console]\ntoken_file = "{tmp_path / "token"}"\n')
    result = run_agent("check-config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}: mqtt.ca_file (line 2): cannot read {tmp_path / 'ca.pem'}: No such file or directory",
        f"{config}: console.token_file (line 7): cannot read {tmp_path / 'token'}: No such file or directory"]
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "token").write_text("1234\n")
    assert run_agent("check-config", str(config)).returncode == 0


def test_a_boolean_for_a_number_or_a_quoted_boolean_is_a_problem_not_a_coercion():
    """`port = true` ran the SCP on port 1, `quota_mb = true` set a 1 MB quota, `show_patient_names = "1"` showed names."""
    problems = check_text('[dicom]\nport = true\n\n[store]\nquota_mb = true\n\n[console]\nshow_patient_names = "1"\n')
    assert problems == ["dicom.port (line 2): Value error, a number, not true",
                        "store.quota_mb (line 5): Value error, a number, not true",
                        "console.show_patient_names (line 8): Value error, true or false, without quotes"]
    assert check_text('[dicom]\nport = 104\n\n[store]\nquota_mb = 500\n\n[console]\nshow_patient_names = true\n') == []


def test_a_number_for_a_boolean_or_a_quoted_number_is_a_problem_not_a_coercion():
    """`[dicom] enabled = 0` turned the DICOM listener off without a word, and `port = "104"` passed."""
    problems = check_text('[dicom]\nenabled = 0\nport = "104"\n\n[mqtt]\nwindow = "20"\n')
    assert problems == ["dicom.enabled (line 2): Value error, true or false, not 0",
                        "dicom.port (line 3): Value error, a number, without quotes",
                        "mqtt.window (line 6): Value error, a number, without quotes"]


def test_problems_in_arrays_of_tables_point_at_their_own_entry():
    """The first [[serial]]'s bad driver was reported at the last [[serial]] header, and a [[checks.level]]
    key at the [checks] header."""
    text = ('[[serial]]\ndriver = "nosuch"\nport = "/dev/ttyUSB0"\n\n[[serial]]\ndriver = "diamentor"\n'
            'port = "/dev/ttyUSB1"\n\n[checks]\n\n[[checks.level]]\nfoo = 1\n')
    problems = check_text(text)
    assert any(p.startswith("serial.0 (line 1)") and "nosuch" in p for p in problems), problems
    assert "checks.level.0.foo (line 12): unknown key" in problems
    assert any(p.startswith("checks.level.0.value (line 11)") for p in problems)


def test_two_staff_dosimeters_at_one_wearers_same_body_part_are_refused():
    """Over and under the apron, both whole_body: the quarter held their sum (1.4 mSv from 0.8 and 0.6) and
    raised an investigational level that neither dosimeter had reached."""
    two = ('[[serial]]\ndriver = "generic"\nprofile = "config/serial-profiles/bgeigie-nano.toml"\nport = "/dev/ttyUSB0"\n'
           'wearer = "W3"\ndevice = "W3-collar"\n\n'
           '[[serial]]\ndriver = "generic"\nprofile = "config/serial-profiles/bgeigie-nano.toml"\nport = "/dev/ttyUSB1"\n'
           'wearer = "W3"\ndevice = "W3-under"\n')
    problems = check_text(two)
    assert any("W3 (whole_body)" in p and "one dosimeter" in p for p in problems), problems
    assert check_text(two.replace('device = "W3-under"', 'device = "W3-under"\nbody_part = "lens"')) == []


def test_a_misspelt_key_is_named_unknown_with_the_nearest_known_key():
    """A typo said only "Extra inputs are not permitted", which does not tell hospital IT what was meant."""
    problems = check_text('[dicom]\nprot = 104\nacse_timout_s = 30\n\n[consol]\nport = 1\n\n[mqtt]\nwindows = 5\n')
    assert problems == ["dicom.prot (line 2): unknown key; did you mean 'port'?",
                        "dicom.acse_timout_s (line 3): unknown key; did you mean 'acse_timeout_s'?",
                        "mqtt.windows (line 9): unknown key; did you mean 'window'?",
                        "consol (line 5): unknown key; did you mean 'console'?"]


def test_each_problem_of_a_listed_table_is_its_own_line_at_the_tables_key(tmp_path, monkeypatch):
    """A table's problems came as one "checks (line 1): Value error, ..." problem spanning several lines
    (the later ones without the key), a table saved with a byte order mark was "TOML syntax: Invalid
    statement" although the configuration may have one, and a Latin-1 table gave a codec message."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.toml").write_bytes("# Zürich\n[[checks.level]]\n".encode("latin-1"))
    (tmp_path / "rows.toml").write_text('[[checks.level]]\nid = "x"\n')
    text = '[station]\nsite = "a"\n\n[checks]\ntables = ["latin1.toml", "rows.toml"]\n'
    problems = check_text(text)
    assert problems[0] == "checks.tables (line 5): latin1.toml: line 1: not UTF-8 text (byte 0xfc): save the file as UTF-8"
    assert problems[1] == "checks.tables (line 5): rows.toml: checks.level[0] (id 'x').kind: Field required"
    assert len(problems) > 2 and all(p.startswith("checks.tables (line 5): rows.toml: ") for p in problems[1:])
    assert all("\n" not in p for p in problems)
    example = (REPO / "config" / "local-drl.example.toml").read_text(encoding="utf-8")
    (tmp_path / "bom.toml").write_text("\ufeff" + example, encoding="utf-8")
    assert check_text('[checks]\ntables = ["bom.toml"]\n') == []


def test_a_misspelt_serial_key_names_the_nearest_known_one():
    """In a [[serial]] entry a typo said "driver options: baudrat: Extra inputs are not permitted"."""
    problems = check_text('[[serial]]\ndriver = "diamentor"\nport = "/dev/ttyUSB0"\nbaudrat = 9600\n\n'
                          '[[serial]]\ndriver = "gmc"\nport = "/dev/ttyUSB1"\ncpm_per_usv = 150\n')
    assert "driver options: baudrat: unknown key; did you mean 'baudrate'?" in problems[0]
    assert "driver options: cpm_per_usv: unknown key; did you mean 'cpm_per_usv_h'?" in problems[1]


def test_a_password_file_not_in_utf8_is_caught_by_check_config(tmp_path):
    """A password file saved as Latin-1 passed check-config; the uplink then retried for ever with
    "client setup: 'utf-8' codec can't decode byte 0xe4", naming no file."""
    (tmp_path / "pw").write_bytes("p\u00e4ss\n".encode("latin-1"))
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nusername = "ct"\npassword_file = "{tmp_path / "pw"}"\n')
    result = run_agent("check-config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{config}: mqtt.password_file (line 3): password_file {tmp_path / 'pw'} is not UTF-8 text: save it as UTF-8"


def test_a_wrong_item_of_a_list_is_reported_at_the_line_of_its_key():
    """An item of a list value (not an array of tables) once came without a line: the installer had to search."""
    text = '[station]\nsite = "a"\n\n[dicom]\nport = 11112\nallowed_calling_aes = ["CT_1", 5]\n'
    assert check_text(text) == ["dicom.allowed_calling_aes.1 (line 6): Input should be a valid string"]


def test_check_config_of_a_missing_file_names_it_once(tmp_path):
    """It once said 'missing.toml: missing.toml: No such file or directory'."""
    missing = tmp_path / "missing.toml"
    r = run_agent("check-config", str(missing))
    assert r.returncode == 1 and r.stderr == f"{missing}: No such file or directory\n"


def test_a_serial_devices_role_written_as_documented_is_taken():
    """``role = "room"`` (docs/drivers.md) was refused with "true or false, without quotes": an optional choice of
    words was taken for an optional boolean, so a device could not be given the role its readings need."""
    text = ('[[serial]]\ndriver = "diamentor"\nport = "/dev/ttyUSB0"\nrole = "dap_meter"\n\n'
            '[[serial]]\ndriver = "automess"\nport = "/dev/ttyUSB1"\nrole = "room"\nlocation = "corridor"\n')
    assert check_text(text) == []
    assert [p.resolved_role for p in Config.model_validate(tomllib.loads(text)).serial] == ["dap_meter", "room"]
    assert any("role" in p for p in check_text('[[serial]]\ndriver = "diamentor"\nport = "/dev/ttyUSB0"\nrole = "x"\n'))
