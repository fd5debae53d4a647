"""The systemd units hospital IT installs: the station's agent (hardened, notify-type, watchdog on)
and the central site's receiver."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, run_agent

UNIT = REPO / "systemd" / "alara-edge.service"
UNITS = [UNIT, REPO / "systemd" / "alara-edge-central.service"]


def test_unit_runs_as_notify_service_with_watchdog_and_reload():
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "User=alara-edge" in text and "SupplementaryGroups=dialout" in text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_score_is_at_most_2(unit):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0


def test_install_script_is_valid_shell():
    assert subprocess.run(["sh", "-n", str(REPO / "systemd" / "install.sh")]).returncode == 0


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_runs_a_command_of_the_installed_package_with_the_installed_config(unit):
    (exec_start,) = [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    program, command, *rest = exec_start.split()
    assert program == "/opt/alara-edge/venv/bin/alara-edge"  # where install.sh links the venv
    assert rest == ["-c", "/etc/alara-edge/alara-edge.toml"]  # where install.sh writes the configuration
    assert "/etc/alara-edge/alara-edge.toml" in (REPO / "systemd" / "install.sh").read_text()
    assert unit.name in (REPO / "systemd" / "install.sh").read_text()
    r = run_agent(command, "--help")
    assert r.returncode == 0 and "-c" in r.stdout, r.stderr


def _install_example(source: Path, folder: Path) -> str:
    """systemd/examples.sh's install_example, as install.sh runs it (without the owner, as we may not be root)."""
    r = subprocess.run(["sh", "-c", f'. "{REPO}/systemd/examples.sh" && install_example "$0" "$1"', str(source), str(folder)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_an_upgrade_brings_new_reference_tables_but_keeps_a_table_edited_on_the_box(tmp_path):
    etc, release = tmp_path / "etc", tmp_path / "release"
    etc.mkdir()
    release.mkdir()
    table = release / "uk-ukhsa-2024-adult-ct.toml"
    table.write_text("version 1\n")
    assert _install_example(table, etc) == ""  # first install
    assert (etc / table.name).read_text() == "version 1\n"

    table.write_text("version 2\n")  # an upgrade, nothing edited here: the new version is installed
    assert _install_example(table, etc) == ""
    assert (etc / table.name).read_text() == "version 2\n" and not (etc / f"{table.name}.dist").exists()

    (etc / table.name).write_text("version 2, local values\n")  # the physicist edits the table
    table.write_text("version 3\n")
    notice = _install_example(table, etc)
    assert (etc / table.name).read_text() == "version 2, local values\n"  # the edit stays
    assert (etc / f"{table.name}.dist").read_text() == "version 3\n" and "edited here" in notice

    table.write_text("version 4\n")  # still edited: the edit stays, the .dist follows the release
    _install_example(table, etc)
    assert (etc / table.name).read_text() == "version 2, local values\n"
    assert (etc / f"{table.name}.dist").read_text() == "version 4\n"



def test_an_upgrade_checks_the_configuration_with_the_new_version_before_switching_to_it():
    """A configuration the new version rejects stops install.sh before /opt/alara-edge/venv is switched:
    otherwise the aborted upgrade left the service's next start on the new code with the old unit, and
    a re-run deleted the venv.previous that held the version still running (no rollback left)."""
    script = (REPO / "systemd" / "install.sh").read_text()
    check = script.index('"$release/bin/alara-edge" check-config /etc/alara-edge/alara-edge.toml')
    assert check < script.index('switch_release /opt/alara-edge "$release"')  # venv and venv.previous
