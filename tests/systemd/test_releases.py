"""systemd/releases.sh, as install.sh runs it on /opt/alara-edge: which venv the service runs, which one a
rollback goes to, and what a re-run (hospital IT repairing a box, configuration management every hour) leaves.
Real venvs, with a small alara-edge wheel installed by pip, in a temporary folder instead of /opt/alara-edge."""
import base64
import hashlib
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def _wheel(folder: Path, version: str, code: str) -> Path:
    """A wheel of alara-edge VERSION whose package holds CODE (a release, as pip installs it)."""
    info = f"alara_edge-{version}.dist-info"
    files = {"agent/__init__.py": code,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: alara-edge\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for name, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{hashlib.sha256(code.encode()).hexdigest()[:8]}" / f"alara_edge-{version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


class Box:
    """/opt/alara-edge of a box: install(VERSION, CODE) builds a venv as install.sh does and switches to it."""

    def __init__(self, base: Path):
        self.base, self.builds = base, 0
        base.mkdir()

    def install(self, version: str, code: str) -> str:
        self._sh("prune_releases", str(self.base))
        self.builds += 1
        release = self.base / f"venv-{self.builds:04d}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(release)], check=True)
        wheel = _wheel(self.base.parent, version, code)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(release / "bin" / "python"), "install", "--quiet",
                        "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
                       check=True, capture_output=True)
        assert len(self.venvs()) <= 3  # the current, the rollback, the one built
        return self._sh("switch_release", str(self.base), str(release))

    def _sh(self, function: str, *args: str) -> str:
        r = subprocess.run(["sh", "-c", f'set -eu; . "{REPO}/systemd/releases.sh"; {function} "$@"', "sh", *args],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def current(self) -> Path:
        return (self.base / "venv").resolve()

    def rollback(self) -> Path:
        return (self.base / "venv.previous").resolve()

    def venvs(self) -> list[Path]:
        return sorted(self.base.glob("venv-*"))

    def runs(self) -> str:
        """The RELEASE of the agent package that the service would import from /opt/alara-edge/venv."""
        python = self.base / "venv" / "bin" / "python"
        r = subprocess.run([str(python), "-I", "-c", "import agent; print(agent.RELEASE)"],
                           capture_output=True, text=True)
        return r.stdout.strip() or r.stderr


@pytest.fixture
def box(tmp_path):
    return Box(tmp_path / "opt-alara-edge")


def test_a_rerun_with_the_running_release_keeps_the_rollback_to_the_last_different_one(box):
    assert "installed alara-edge 1.0" in box.install("1.0", "RELEASE = 'A'\n")
    a = box.current()
    message = box.install("2.0", "RELEASE = 'B'\n")
    assert "installed alara-edge 2.0" in message and "rollback to alara-edge 1.0" in message
    b = box.current()
    for _ in range(3):  # IT re-runs it to repair the box; configuration management runs it every hour
        message = box.install("2.0", "RELEASE = 'B'\n")
        assert "alara-edge 2.0" in message and "is already installed" in message, message
        assert "rollback still to alara-edge 1.0" in message, message
        assert box.current() == b and box.runs() == "B"  # the venv the service runs stays (no restart needed)
        assert box.rollback() == a and a.is_dir()  # the rollback still goes to 1.0
        assert box.venvs() == [a, b]
    subprocess.run(["sh", "-c", 'ln -sfn "$(readlink venv.previous)" venv'], cwd=box.base, check=True)  # README
    assert box.runs() == "A"


def test_new_code_with_the_same_version_number_is_an_upgrade_with_a_rollback(box):
    """Every checkout of a branch may declare the same version (pyproject's): the installed files tell them apart."""
    box.install("0.1.0", "RELEASE = 'A'\n")
    a = box.current()
    message = box.install("0.1.0", "RELEASE = 'B'\n")
    assert "already installed" not in message and "rollback to alara-edge 0.1.0" in message, message
    assert box.runs() == "B" and box.rollback() == a and a.is_dir()


def test_a_rerun_replaces_a_damaged_running_venv_and_keeps_the_rollback(box):
    box.install("1.0", "RELEASE = 'A'\n")
    a = box.current()
    box.install("2.0", "RELEASE = 'B'\n")
    damaged = box.current()
    next(damaged.glob("lib/python*/site-packages/agent/__init__.py")).write_text("RELEASE = 'damaged'\n")
    message = box.install("2.0", "RELEASE = 'B'\n")
    assert "damaged: reinstalled, rollback still to alara-edge 1.0" in message, message
    assert box.runs() == "B" and box.rollback() == a and a.is_dir() and not damaged.exists()
    assert box.venvs() == [a, box.current()]


def test_a_venv_left_by_an_interrupted_install_is_removed_by_the_next_one(box):
    box.install("1.0", "RELEASE = 'A'\n")
    box.install("2.0", "RELEASE = 'B'\n")
    for n in range(3):  # pip failed (no network), the run was interrupted
        (box.base / f"venv-left-{n}" / "lib").mkdir(parents=True)
    box.install("2.0", "RELEASE = 'B'\n")
    assert box.venvs() == sorted([box.rollback(), box.current()])


def _releases_sh(command: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", f'set -eu; . "{REPO}/systemd/releases.sh"; {command}', "sh", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_the_source_id_changes_with_the_package_not_with_caches_tests_or_docs(tmp_path):
    checkout = tmp_path / "checkout"
    for name, text in {"pyproject.toml": "[project]\n", "agent/__init__.py": "A = 1\n", "drivers/d.py": "",
                       "simulator/s.py": "", "tests/test_a.py": "", "README.md": "read me\n"}.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)

    def source_id(spec: str = ".") -> str:
        r = _releases_sh('source_id "$1"', spec, cwd=checkout)
        assert r.returncode == 0 and len(r.stdout.strip()) == 16, r.stderr
        return r.stdout.strip()

    first = source_id()
    (checkout / "agent" / "__pycache__").mkdir()
    (checkout / "agent" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")  # the checkout was run
    (checkout / "tests" / "test_a.py").write_text("changed\n")
    (checkout / "README.md").write_text("changed\n")
    assert source_id() == first
    assert source_id(".[postgres]") != first  # --central installs psycopg too
    (checkout / "drivers" / "d.py").write_text("changed\n")
    assert source_id() != first


def test_a_rerun_from_the_checkout_the_running_venv_was_built_from_builds_nothing(box):
    box.install("1.0", "RELEASE = 'A'\n")
    box.install("2.0", "RELEASE = 'B'\n")
    (box.current() / "alara-edge-source").write_text("0123456789abcdef\n")  # as install.sh records it
    kept = _releases_sh('kept_release "$1" "$2"; echo "switched=$RELEASE_SWITCHED"', str(box.base), "0123456789abcdef")
    assert kept.returncode == 0, kept.stderr
    assert "alara-edge 2.0" in kept.stdout and "is already installed from this checkout: kept it" in kept.stdout
    assert "rollback still to alara-edge 1.0" in kept.stdout and "switched=\n" in kept.stdout  # no restart
    assert _releases_sh('kept_release "$1" "$2"', str(box.base), "fedcba9876543210").returncode == 1  # new code
    next(box.current().glob("lib/python*/site-packages/agent/__init__.py")).write_text("RELEASE = 'damaged'\n")
    assert _releases_sh('kept_release "$1" "$2"', str(box.base), "0123456789abcdef").returncode == 1  # rebuilt


def test_install_switches_venvs_through_releases_sh_and_restarts_only_on_a_change():
    script = (REPO / "systemd" / "install.sh").read_text()
    assert script.index("hold_install_lock /opt/alara-edge") < script.index("prune_releases /opt/alara-edge")
    assert script.index('kept_release /opt/alara-edge "$source"') < script.index('python3 -m venv "$release"')
    assert script.index('switch_release /opt/alara-edge "$release"') < script.index(
        'echo "$source" > /opt/alara-edge/venv/alara-edge-source')
    assert script.index("prune_releases /opt/alara-edge") < script.index('python3 -m venv "$release"')
    assert 'switch_release /opt/alara-edge "$release"' in script
    assert not [line for line in script.splitlines() if "ln -sfn" in line and not line.lstrip().startswith("#")]
    restart = script.index('systemctl restart "$unit"')
    assert script.rindex('[ -z "$RELEASE_SWITCHED" ]', 0, restart) > script.index("switch_release /opt")


def test_a_second_install_waits_for_the_first_to_finish(tmp_path):
    """Two install.sh runs at once (a person and configuration management) would prune and switch the same
    venvs: the second waits, saying so, until the first has ended."""
    log, release = tmp_path / "log", tmp_path / "first may end"
    run = ('set -eu; . "{repo}/systemd/releases.sh"; hold_install_lock "{base}"; echo "{name} holds it" >> "{log}"; '
           'while [ ! -e "{release}" ] && [ "{name}" = first ]; do sleep 0.05; done; echo "{name} ends" >> "{log}"')

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(["sh", "-c", run.format(repo=REPO, base=tmp_path, log=log, release=release, name=name)],
                                stderr=subprocess.PIPE, text=True)

    first = start("first")
    second = None
    try:
        while not log.exists():  # the first run holds the lock
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.01)
        second = start("second")
        assert "waiting for it to finish" in second.stderr.readline()  # said at once, while the first holds it
        assert log.read_text() == "first holds it\n"
        release.touch()
        assert first.wait(10) == 0 and second.wait(10) == 0
    finally:
        release.touch()
        for p in (first, second):
            if p is not None:
                p.kill()
                p.wait()
    assert log.read_text().splitlines() == ["first holds it", "first ends", "second holds it", "second ends"]
