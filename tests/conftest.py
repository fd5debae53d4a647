"""Fixtures every test area may use. Area-specific fixtures live in tests/<area>/conftest.py."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "rdsr-corpus" / "openrem"


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> object:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_cmd(*args: str, module: str = "agent") -> list[str]:
    """The CLI as a user runs it, from this checkout (works with or without `pip install`); ``module``: a test's
    module that runs it (tests.quadratic_backfill)."""
    return [sys.executable, "-m", module, *args]


def agent_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


DROP_WRITE_RIGHTS = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                     "--bounding-set=-dac_override,-dac_read_search"]


def run_unprivileged(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``alara-edge ARGS`` as this user without root's right to ignore file modes (a user in the agent's
    group, or the service user on a file restored as root); skips the test where that cannot be done."""
    import shutil

    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot drop its right to write any file")
    prefix = DROP_WRITE_RIGHTS if os.geteuid() == 0 else []
    return subprocess.run(prefix + agent_cmd(*args), cwd=cwd, env=agent_env(), capture_output=True, text=True,
                          timeout=timeout)


def start_failures_unprivileged(tmp_path: Path, store: Path, spool: Path, timeout: float = 60) -> list[dict]:
    """``alara-edge run`` on ``store`` and ``spool``, run by :func:`run_unprivileged` (free ports, no MQTT),
    expected to stop at once: its ``agent_start_failed`` lines."""
    import json

    config = tmp_path / "a.toml"
    config.write_text(f'[dicom]\nport = {free_port()}\n[console]\nport = {free_port()}\n[mqtt]\nenabled = false\n'
                      f'[store]\npath = "{store}"\nspool_dir = "{spool}"\n')
    result = run_unprivileged("run", "-c", str(config), cwd=tmp_path, timeout=timeout)
    assert result.returncode == 1, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() + result.stderr.splitlines()
            if '"agent_start_failed"' in line]


def run_agent(*args: str, cwd: Path | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd(*args), cwd=cwd, env=agent_env(), capture_output=True, text=True,
                          timeout=timeout, **kw)


def damage_inbox(path: Path) -> None:
    """Overwrite one page of the inbox file at ``path`` (its tries table's root), as a power cut on an SD
    card that acknowledged writes it had not made can: ``quick_check`` then finds the file damaged."""
    import sqlite3

    with sqlite3.connect(path) as db:
        (page,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tries'").fetchone()
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(b"\x5a" * 4096)


def dcmtk(tool: str) -> str | None:
    """Path of a DCMTK tool (storescu, echoscu, dcmdump) — not pynetdicom's apps of the same name."""
    import shutil

    for path in ("/usr/bin/" + tool, shutil.which(tool)):
        if path and Path(path).exists():
            out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            if "dcmtk" in out.lower() or "offis" in out.lower():
                return path
    return None


@pytest.fixture
def store(tmp_path):
    """A fresh agent store (all migrations applied), closed after the test."""
    from agent.store import Store

    s = Store.open(tmp_path / "agent.sqlite")
    yield s
    s.close()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared RDSR corpus is missing: expected it at {CORPUS} (../shared beside the checkout)")
    return CORPUS


class AgentProcess:
    """``alara-edge run`` as a real subprocess on free ports, with its JSON log captured."""

    def __init__(self, workdir: Path, config_text: str = "", extra_args: tuple[str, ...] = (), preexec_fn=None,
                 env: dict[str, str] | None = None, module: str = "agent"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dicom_port = free_port()
        self.console_port = free_port()
        self.config_path = self.workdir / "alara-edge.toml"
        base = (f'[station]\nsite = "test-site"\nid = "test-station"\n\n'
                f'[dicom]\nbind = "127.0.0.1"\nport = {self.dicom_port}\n\n'
                f'[store]\npath = "{self.workdir / "var" / "agent.sqlite"}"\nspool_dir = "{self.workdir / "var" / "spool"}"\n\n'
                # no broker listens here: the agent buffers (tests that need one start their own)
                f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n\n'
                f'[console]\nport = {self.console_port}\n\n')
        self.config_path.write_text(_merge_toml(base, config_text))
        self.log_path = self.workdir / "agent.log"
        self.extra_args = extra_args
        self.preexec_fn = preexec_fn
        self.env = env or {}
        self.module = module
        self.proc: subprocess.Popen | None = None

    @property
    def db_path(self) -> Path:
        return self.workdir / "var" / "agent.sqlite"

    def start(self, timeout: float = 30) -> "AgentProcess":
        import time

        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(agent_cmd("run", "-c", str(self.config_path), *self.extra_args,
                                               module=self.module),
                                     cwd=self.workdir, env=agent_env(**self.env), stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=self.preexec_fn)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_text()}")
            if '"agent_started"' in self.log_text():
                return self
            time.sleep(0.05)
        raise TimeoutError(f"agent did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict]:
        import json

        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self, sig: int = 15, timeout: float = 60) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run_agent(*args, "-c", str(self.config_path), cwd=self.workdir, timeout=timeout)


def _merge_toml(base: str, extra: str) -> str:
    """Append ``extra``; keys of a table already in ``base`` are merged into it (tests override ports etc.)."""
    import re

    if not extra.strip():
        return base
    sections: dict[str, list[str]] = {}
    current = None
    order: list[str] = []
    for line in extra.splitlines():
        m = re.match(r"\s*\[([A-Za-z0-9_.]+)\]\s*$", line)
        if m:
            current = m.group(1)
            if current not in sections:
                sections[current] = []
                order.append(current)
            continue
        sections.setdefault(current or "", []).append(line)
        if current is None and "" not in order:
            order.append("")
    out = base
    for name in order:
        if name and f"[{name}]\n" in out:
            lines = sections[name]
            keys = {l.split("=")[0].strip() for l in lines if "=" in l}
            head, rest = out.split(f"[{name}]\n", 1)
            body, sep, tail = rest.partition("\n\n")
            body = "\n".join(l for l in body.splitlines() if l.split("=")[0].strip() not in keys)
            out = head + f"[{name}]\n" + "\n".join([body, *lines]).strip("\n") + "\n" + sep + tail
        elif name:
            out += f"[{name}]\n" + "\n".join(sections[name]) + "\n\n"
        else:
            out = "\n".join(sections[""]) + "\n" + out
    return out


@pytest.fixture
def agent_process(tmp_path):
    """Factory: ``agent_process(config_text="...", extra_args=(...))`` → a started :class:`AgentProcess`."""
    started: list[AgentProcess] = []

    def factory(config_text: str = "", extra_args: tuple[str, ...] = (), name: str = "agent", **kw) -> AgentProcess:
        proc = AgentProcess(tmp_path / name, config_text, extra_args, **kw).start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()
