"""The console's HTTP surface: the page, ``/healthz``, the JSON API and the event stream.

Routes (all JSON except ``/`` and the stream; see docs/console.md):

``GET /``                         the page (static/index.html)
``GET /healthz``                  200 healthy / 503 not, body: the health document
``GET /api/state``                everything the page shows, plus the CSRF token for its POSTs
``GET /api/alerts?open=1&limit=N`` alerts, newest first
``POST /api/alerts/{id}/ack``     ``{"by", "reason", "note"}`` → the acknowledged alert
``POST /api/procedure/new``       ``{"device": optional}`` → starts a new fluoroscopy procedure
``GET /api/events``               server-sent events: alert, ack, studies, set_aside, procedure, health, alarm
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from agent.checks.alerts import AlreadyAcknowledged

from .access import login_page

if TYPE_CHECKING:
    from .component import Console

STATIC = Path(__file__).with_name("static")
MAX_BODY = 16 * 1024


def build_app(console: "Console") -> web.Application:
    app = web.Application(middlewares=[console.access.middleware], client_max_size=MAX_BODY)

    async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def index(request: web.Request) -> web.StreamResponse:
        if "token" in request.query:
            raise web.HTTPSeeOther("/")
        return web.FileResponse(STATIC / "index.html", headers=_NO_STORE)

    async def login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if console.access.token is None or console.access.authenticated(request):
            raise web.HTTPSeeOther("/")
        try:
            accepted = console.access.check_login(request, str(form.get("token", "")))
        except web.HTTPTooManyRequests as locked:  # the form stays: a kiosk has no other way back to it
            return login_page(status=429, message=locked.text or "")
        if accepted:
            response = web.HTTPSeeOther("/")
            console.access.set_cookie(response)
            raise response
        return login_page(status=401, message="Wrong token or PIN.")

    async def healthz(request: web.Request) -> web.Response:
        health = await blocking(console.health)
        return web.json_response(health, status=200 if health["ok"] else 503, headers=_NO_STORE)

    async def state(request: web.Request) -> web.Response:
        return web.json_response(await blocking(console.snapshot), headers=_NO_STORE, dumps=_dumps)

    async def alerts(request: web.Request) -> web.Response:
        open_only = request.query.get("open", "0") in ("1", "true", "yes")
        try:
            limit = max(1, min(int(request.query.get("limit", "50")), 500))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a number")
        return web.json_response({"alerts": await blocking(console.alerts, open_only, limit)},
                                 headers=_NO_STORE, dumps=_dumps)

    async def ack(request: web.Request) -> web.Response:
        body = await _json_body(request)
        by, reason, note = (str(body.get(k) or "").strip() for k in ("by", "reason", "note"))
        if not by or len(by) > 64 or not by.isprintable():
            return web.json_response({"error": "operator id required (up to 64 characters)"}, status=400)
        if len(reason) > 200 or len(note) > 1000:
            return web.json_response({"error": "reason or note too long"}, status=400)
        if reason == "other" and not note:
            return web.json_response({"error": "reason 'other' needs a note saying what it was"}, status=400)
        try:
            alert = await blocking(console.acknowledge, request.match_info["id"], by, reason or None, note or None)
        except LookupError as exc:
            return web.json_response({"error": str(exc) or "no such alert"}, status=404)
        except AlreadyAcknowledged as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"alert": alert}, dumps=_dumps)

    async def new_procedure(request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            procedure = await blocking(console.new_procedure, body.get("device"))
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"procedure": procedure}, dumps=_dumps)

    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_post("/api/alerts/{id}/ack", ack)
    app.router.add_post("/api/procedure/new", new_procedure)
    app.router.add_get("/api/events", console.hub_stream)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_security_headers)
    return app


_NO_STORE = {"Cache-Control": "no-store"}


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="invalid JSON")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Nothing may be loaded from elsewhere, nor may another site frame the page."""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Chromium send Origin: null
