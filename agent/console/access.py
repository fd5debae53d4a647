"""Who may use the console, and protection of its state-changing requests.

* **Token or PIN.** When one is configured (``[console] token`` / ``token_file``; mandatory when the
  console is bound beyond loopback) every page and API call needs it: typed once per browser in the
  login form (or given once as ``/?token=…`` by a kiosk start-up URL), then carried by a cookie
  (``HttpOnly``, ``SameSite=Strict``) whose value is derived from the token, so that changing the token
  logs every browser out and an agent restart does not.  Command-line clients send
  ``Authorization: Bearer <token>``.  Failed logins are rate-limited per client address.
* **Cross-site requests.** A POST is refused when the browser says it comes from another site
  (``Sec-Fetch-Site``), when its ``Origin`` is not this console, or when it lacks the ``X-CSRF-Token``
  header the page reads from ``/api/state`` (a custom header also forces a CORS preflight, which is
  never granted).  Bearer-token clients need no CSRF token: a browser never adds that header by itself.
* **DNS rebinding.** Bound to loopback without a token, requests must name a loopback host.

``/healthz`` and the static files (no data in them) are open, so monitoring needs no token.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Awaitable, Callable, Optional
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from agent.config import ConsoleConfig, is_loopback

log = structlog.get_logger("agent.console")

COOKIE = "alara_console"
CSRF_HEADER = "X-CSRF-Token"
OPEN_PATHS = ("/healthz", "/static/", "/login", "/favicon.ico")
MAX_FAILURES = 5
LOCKOUT_S = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenError(ValueError):
    """``token_file`` cannot be read or holds no usable token; ``reason`` says why (without the key)."""

    def __init__(self, reason: str):
        super().__init__(f"[console] token_file: {reason}")
        self.reason = reason


def load_token(cfg: ConsoleConfig) -> Optional[str]:
    """The configured token (from ``token`` or the first line of ``token_file``), or None;
    :class:`TokenError` if the file cannot be read or its first line is shorter than 4 characters."""
    if cfg.token is not None:
        return cfg.token.get_secret_value().strip()
    if cfg.token_file is not None:
        try:
            lines = cfg.token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TokenError(f"cannot read {cfg.token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise TokenError(f"{cfg.token_file} is not UTF-8 text") from None
        token = lines[0].strip() if lines else ""
        if len(token) < 4:
            raise TokenError(f"{cfg.token_file}: the token must have at least 4 characters on its first line")
        return token
    return None


class Access:
    """Authentication and CSRF checks for one console (an aiohttp middleware: :meth:`middleware`)."""

    def __init__(self, token: Optional[str], bind: str):
        if token is None and not is_loopback(bind):
            raise ValueError(f"the console bound to {bind} needs a token")
        self.token = token
        self.loopback_only = token is None
        key = token.encode() if token else secrets.token_bytes(32)
        self.session = hmac.new(key, b"alara-edge console session v1", hashlib.sha256).hexdigest()
        self.csrf = hmac.new(key, b"alara-edge console csrf v1", hashlib.sha256).hexdigest()
        self._failures: dict[str, tuple[int, float]] = {}

    # -- credentials ---------------------------------------------------------------------
    def bearer(self, request: web.Request) -> bool:
        """A request carrying ``Authorization: Bearer <token>``; a wrong one counts like a wrong login
        (a PIN must not be guessable by scripting the API instead of the form)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return bool(self.token and scheme.lower() == "bearer" and self.check_login(request, value))

    def authenticated(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session.encode()) or self.bearer(request)

    def check_login(self, request: web.Request, given: str) -> bool:
        """Compare a typed token/PIN, counting failures per client address (raises 429 when locked out)."""
        peer = request.remote or "?"
        now = time.monotonic()
        count, until = self._failures.get(peer, (0, 0.0))
        if count >= MAX_FAILURES and now < until:
            raise web.HTTPTooManyRequests(text="Too many wrong attempts; wait half a minute.")
        ok = bool(self.token) and hmac.compare_digest(given.strip().encode(), (self.token or "").encode())
        if ok:
            self._failures.pop(peer, None)
        else:
            count = (count if now < until else 0) + 1
            self._failures[peer] = (count, now + LOCKOUT_S)
            log.warning("console_login_failed", peer=peer, failures=count)
        return ok

    def set_cookie(self, response: web.StreamResponse) -> None:
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="Strict", path="/",
                            max_age=365 * 24 * 3600)

    # -- request checks ------------------------------------------------------------------
    def cross_site_reason(self, request: web.Request, need_csrf: bool = True) -> Optional[str]:
        """Why a state-changing request must be refused, or None if it may proceed."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request (Sec-Fetch-Site: {site})"
        origin = request.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != request.host.lower():
                return "request from another origin"
        if need_csrf and not self.bearer(request):
            if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), self.csrf.encode()):
                return "missing or wrong CSRF token"
        return None

    def host_allowed(self, request: web.Request) -> bool:
        if not self.loopback_only:
            return True
        host = urlsplit(f"//{request.host}").hostname or ""
        return is_loopback(host)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.host_allowed(request):
            return web.json_response({"error": "unknown host name"}, status=421)
        path = request.path
        open_path = path == "/healthz" or any(path.startswith(p) for p in OPEN_PATHS[1:])
        if not open_path and not self.authenticated(request):
            if path == "/" and request.method == "GET":
                given = request.query.get("token")
                try:
                    accepted = given is not None and self.check_login(request, given)
                except web.HTTPTooManyRequests as locked:  # a kiosk must keep its form to try again
                    return login_page(status=429, message=locked.text or "")
                if accepted:
                    response = web.HTTPSeeOther("/")  # drop the token from the address bar
                    self.set_cookie(response)
                    raise response
                return login_page(status=401, message="Wrong token or PIN." if given is not None else "")
            return web.json_response({"error": "token or PIN required"}, status=401)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            reason = self.cross_site_reason(request, need_csrf=path != "/login")
            if reason:
                log.warning("console_request_refused", path=path, reason=reason, peer=request.remote)
                return web.json_response({"error": reason}, status=403)
        return await handler(request)


def login_page(status: int = 200, message: str = "") -> web.Response:
    note = f'<p class="login-error" role="alert">{message}</p>' if message else ""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>alara-edge console</title><link rel="stylesheet" href="/static/console.css"></head>
<body class="login"><form method="post" action="/login" class="login-form">
<h1>alara-edge console</h1>{note}
<label for="token">Token or PIN</label>
<input id="token" name="token" type="password" autocomplete="current-password" inputmode="text" autofocus required>
<button type="submit">Open the console</button></form></body></html>"""
    return web.Response(text=html, status=status, content_type="text/html")
