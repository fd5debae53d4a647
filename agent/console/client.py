"""The running agent's console API, from a command on the same machine.

Only one process may write the store (the agent holds its writer lock), so ``alara-edge ack``
hands an acknowledgement to the running agent through this client, and ``alara-edge alerts
--follow`` listens to the same event stream the page uses.  The client talks to the console's
own address (loopback when it listens on all addresses) and sends the configured token as a
bearer token.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterator, Optional

from agent.config import ConsoleConfig

from .access import CSRF_HEADER, load_token


class ConsoleUnavailable(ConnectionError):
    """No console answers (the agent is not running, or its console is disabled)."""


class ConsoleRefused(Exception):
    """The console answered with an error; ``status`` and the agent's message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ConsoleClient:
    def __init__(self, cfg: ConsoleConfig, timeout_s: float = 10.0):
        if not cfg.enabled:
            raise ConsoleUnavailable("the console is disabled in the configuration ([console] enabled = false)")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(cfg.bind, cfg.bind)
        self.base = f"http://{'[' + host + ']' if ':' in host else host}:{cfg.port}"
        self.token = load_token(cfg)
        self.timeout_s = timeout_s

    def _open(self, path: str, method: str = "GET", body: Optional[dict[str, Any]] = None,
              headers: Optional[dict[str, str]] = None, timeout: Optional[float] = None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout_s)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except ValueError:
                message = str(exc.reason)
            raise ConsoleRefused(exc.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConsoleUnavailable(f"no console at {self.base}: {getattr(exc, 'reason', exc)}") from None

    def _json(self, path: str, method: str = "GET", body: Optional[dict[str, Any]] = None,
              headers: Optional[dict[str, str]] = None) -> Any:
        with self._open(path, method, body, headers) as response:
            return json.loads(response.read())

    def acknowledge(self, alert_id: str, by: str, reason: Optional[str], note: Optional[str] = None) -> dict[str, Any]:
        """Acknowledge through the running agent; returns the acknowledged alert."""
        headers = {} if self.token else {CSRF_HEADER: self._json("/api/state")["csrf"]}
        answer = self._json(f"/api/alerts/{urllib.request.quote(alert_id, safe='')}/ack", "POST",
                            {"by": by, "reason": reason, "note": note}, headers)
        return answer["alert"]

    def alerts(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._json(f"/api/alerts?limit={int(limit)}")["alerts"]

    def events(self, read_timeout_s: float = 40.0) -> Iterator[tuple[str, Any]]:
        """``("open", None)``, then ``(event, data)`` from the console's event stream until it ends
        (raises :class:`ConsoleUnavailable` or OSError when the connection dies)."""
        with self._open("/api/events", headers={"Accept": "text/event-stream"}, timeout=read_timeout_s) as stream:
            yield "open", None
            event, data = "message", []
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "event":
                        event = value
                    elif key == "data":
                        data.append(value)
