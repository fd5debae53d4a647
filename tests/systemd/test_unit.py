"""The systemd unit hospital IT installs: hardened, notify-type, watchdog on."""
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "alara-edge.service"


def test_unit_runs_as_notify_service_with_watchdog_and_reload():
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "User=alara-edge" in text and "SupplementaryGroups=dialout" in text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_exposure_score_is_at_most_2():
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0


def test_install_script_is_valid_shell():
    assert subprocess.run(["sh", "-n", str(REPO / "systemd" / "install.sh")]).returncode == 0
