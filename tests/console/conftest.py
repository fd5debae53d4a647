"""Console fixtures: an agent's console on a free port and a real headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

from agent.config import Config
from agent.console import Console
from agent.daemon import Agent
from tests.conftest import REPO

ARTIFACTS = REPO / "test-artifacts" / "console"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Station:
    """A running agent in this process, assembled as ``alara-edge run`` does, with its console on a
    free port (and its DICOM listener on another when ``dicom=True``)."""

    def __init__(self, workdir: Path, console: dict[str, Any], dicom: bool = False, checks: Optional[dict] = None,
                 serial: Optional[list[dict]] = None, mqtt: Optional[dict] = None, timezone: Optional[str] = None):
        self.cfg = Config.model_validate({
            "station": {"site": "test-site", "id": "ct-1", "timezone": timezone},
            "dicom": {"enabled": dicom, "bind": "127.0.0.1", "port": 0},
            "store": {"path": str(workdir / "agent.sqlite"), "spool_dir": str(workdir / "spool")},
            "checks": checks or {},
            "serial": serial or [],
            "mqtt": dict({"enabled": mqtt is not None}, **(mqtt or {})),
            "console": dict({"port": 0}, **console)})
        self.agent = Agent(self.cfg)
        wire(self.agent)
        self.agent.start()
        self.cfg.console.port = self.console.port  # what a command-line client reads

    bus = property(lambda self: self.agent.bus)
    store = property(lambda self: self.agent.store)

    @property
    def console(self) -> Console:
        return next(c for c in self.agent.components if isinstance(c, Console))

    def config_file(self) -> Path:
        """The station's configuration as a TOML file, for the command-line tools."""
        c = self.cfg.console
        token = f'token = "{c.token.get_secret_value()}"\n' if c.token else ""
        path = self.cfg.store.path.parent / "alara-edge.toml"
        path.write_text(f'[station]\nsite = "test-site"\nid = "ct-1"\n\n[store]\npath = "{self.cfg.store.path}"\n\n'
                        f'[console]\nbind = "{c.bind}"\nport = {c.port}\n{token}')
        return path

    def replace_console(self) -> Console:
        """A new console for the same agent on the same port (as after a restart)."""
        self.agent.components = [c for c in self.agent.components if not isinstance(c, Console)]
        console = Console(self.cfg.console, self.agent)
        self.agent.components.append(console)
        console.start()
        return console

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.console.port}"

    def request(self, path: str, method: str = "GET", body: Optional[dict] = None,
                headers: Optional[dict[str, str]] = None) -> tuple[int, dict[str, str], Any]:
        """An HTTP request to the console; returns (status, headers, JSON or text body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with _NO_REDIRECT.open(req, timeout=10) as r:
                status, hdrs, raw = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, dict(e.headers), e.read()
        text = raw.decode()
        try:
            return status, hdrs, json.loads(text)
        except ValueError:
            return status, hdrs, text

    def outbox(self, kind: str) -> list[dict]:
        db = self.store.reader()
        try:
            return [json.loads(b) for (b,) in db.execute("SELECT body FROM outbox WHERE kind = ? ORDER BY seq", [kind])]
        finally:
            db.conn.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_NO_REDIRECT = urllib.request.build_opener(_NoRedirect)


def wire(agent: Agent) -> None:
    """What the daemon does for the console: add it as a component, after the parts it shows."""
    if agent.cfg.console.enabled and not any(isinstance(c, Console) for c in agent.components):
        agent.components.append(Console(agent.cfg.console, agent))


@pytest.fixture
def station(tmp_path):
    """Factory: ``station(token="1234", bind="0.0.0.0", dicom=True)`` → a started :class:`Station`."""
    made: list[Station] = []

    def factory(dicom: bool = False, checks: Optional[dict] = None, serial: Optional[list[dict]] = None,
                mqtt: Optional[dict] = None, timezone: Optional[str] = None, **console: Any) -> Station:
        s = Station(tmp_path / f"station{len(made)}", console, dicom=dicom, checks=checks, serial=serial, mqtt=mqtt,
                    timezone=timezone)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.agent.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)  # a loaded 2-core CI machine; latencies are measured separately
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is not installed (tools/system-packages.sh installs the Debian package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page at the kiosk size (800x480), its console messages and requests recorded."""
    context = browser.new_context(viewport={"width": 800, "height": 480})
    pg = context.new_page()
    pg.requests = []  # type: ignore[attr-defined]
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
