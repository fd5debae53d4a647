"""The console as an agent component: an aiohttp server on its own thread and event loop.

``Console(cfg.console, agent)`` reads what it shows from ``agent.store`` (read-only connections),
hears about new things on ``agent.bus`` and writes only acknowledgements (through
``agent.store.transaction()``, the agent's single writer).  It looks for optional parts on the
agent: ``agent.dicom`` (the SCP), ``agent.uplink`` (``health()``), ``agent.serial`` (``health()``,
``new_procedure(device)``); a part that is missing shows as "not running".
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from typing import Any, Iterator, Optional

import sqlite_utils
import structlog
from aiohttp import web

from agent.checks import ChecksStage, Rules
from agent.checks.alerts import ACK_REASONS, acknowledge, list_alerts
from agent.config import ConsoleConfig
from agent.store import outbox

from . import views
from .access import Access, load_token
from .app import build_app
from .live import Hub

log = structlog.get_logger("agent.console")

REASONS = list(ACK_REASONS)
MARK_LABELS = {"notification_first": "1st notification", "SRDL": "SRDL"}
BUS_TOPICS = {"alert", "ack", "report", "reading", "alarm", "outbox", "receipt_failed"}
HEALTH_PUSH_S = 5.0
SET_ASIDE_WINDOW_S = 24 * 3600  # objects set aside unchecked are shown for a day (`alara-edge studies` lists them all)
SET_ASIDE_PUSH_S = 60.0  # and leave the page when they are older (the count of non-dose objects with them)


class Console:
    """The technologist's console. ``start()`` returns once it listens (``self.port``)."""

    def __init__(self, cfg: ConsoleConfig, agent: Any):
        self.cfg = cfg
        self.agent = agent
        self.access = Access(load_token(cfg), cfg.bind)
        self.port: Optional[int] = None
        self.procedure: Optional[dict[str, Any]] = None
        self.alarms: deque[dict[str, Any]] = deque(maxlen=20)
        self.hub: Optional[Hub] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._pending: set[str] = set()
        self._unsubscribe = lambda: None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            pusher = loop.create_task(self._push_health())
            loop.run_forever()
            pusher.cancel()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=serve, name="console", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise TimeoutError("the console did not start listening within 30 s")
        if failure:
            raise failure[0]
        self._unsubscribe = self.agent.bus.subscribe(self._on_bus, BUS_TOPICS)
        log.info("console_listening", bind=self.cfg.bind, port=self.port, token_required=self.access.token is not None)

    async def _listen(self) -> None:
        self.hub = Hub(asyncio.get_running_loop())
        self._runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.bind, self.cfg.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self.hub:
            self.hub.close()
        await asyncio.sleep(0.05)  # let the streams see the end
        if self._runner:
            await self._runner.cleanup()

    def stop(self) -> None:
        self._unsubscribe()
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        log.info("console_stopped")

    async def hub_stream(self, request: web.Request) -> web.StreamResponse:
        assert self.hub is not None
        return await self.hub.stream(request)

    # -- bus → browsers (called on the publisher's thread) ---------------------------------
    def _on_bus(self, topic: str, payload: Any) -> None:
        if self.hub is None:
            return
        if topic in ("alert", "ack"):
            alert = _as_dict(payload)
            self._loop_call(self._push_alert, topic, alert)
        elif topic == "report":
            self._refresh_soon("studies")
        elif topic == "reading":
            view = views.procedure(payload, self._marks())
            if view is not None:
                self.procedure = view
                self.hub.publish_threadsafe("procedure", view)
        elif topic == "alarm":
            alarm = dict(_as_dict(payload) or {}, at=_utcnow())
            if alarm.get("cleared"):  # the condition is over: forget what was heard of it
                for old in [a for a in self.alarms if a.get("kind") == alarm.get("kind")]:
                    self.alarms.remove(old)
            else:
                self.alarms.appendleft(alarm)
            self.hub.publish_threadsafe("alarm", alarm)
            self._refresh_soon("health")
        elif topic == "outbox":
            self._refresh_soon("health")
        elif topic == "receipt_failed":  # kept in failed/ (committed): an unchecked dose report shows at once;
            # a non-dose object only changes a count (a router forwarding a study sends thousands)
            self._refresh_soon("set_aside", slow=isinstance(payload, dict) and payload.get("status") == "rejected")

    @property
    def _watched(self) -> bool:
        """A page is connected: only then is pushing anything worth the work."""
        return bool(self.hub and self.hub.clients)

    def _loop_call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _refresh_soon(self, what: str, slow: bool = False) -> None:
        """Recompute ``studies``, ``set_aside`` or ``health`` once shortly (bursts of messages coalesce) and push it."""
        if self._watched:  # else waking the loop for every report would only cost the pipeline time
            self._loop_call(self._schedule, what, slow)

    def _push_alert(self, topic: str, alert: dict[str, Any]) -> None:
        """On the loop: add the accession number (a quick read) and push; the study list follows."""
        async def push() -> None:
            if not self._watched:
                return  # the open alerts are in the snapshot a page fetches when it connects
            try:
                alerts = await asyncio.get_running_loop().run_in_executor(None, self._with_accession, [alert])
            except Exception:
                log.exception("console_alert_lookup_failed")
                alerts = [alert]
            if self.hub:
                self.hub.publish(topic, alerts[0])
            self._schedule("studies")

        asyncio.ensure_future(push())

    def _with_accession(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._reader() as db:
            return views.with_accession(db, alerts)

    def _schedule(self, what: str, slow: bool = False) -> None:
        if what in self._pending or not self._watched:
            return  # nobody is looking: a page that connects gets a fresh snapshot
        self._pending.add(what)
        asyncio.get_running_loop().call_later(0.5 if what == "health" or slow else 0.05,
                                              lambda: asyncio.ensure_future(self._refresh(what)))

    async def _refresh(self, what: str) -> None:
        self._pending.discard(what)
        fn = {"studies": self.studies, "set_aside": self.set_aside}.get(what, self.health)
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, fn)
        except Exception:
            log.exception("console_refresh_failed", what=what)
            return
        if self.hub:
            self.hub.publish(what, data)

    async def _push_health(self) -> None:
        last_set_aside = time.monotonic()
        while True:
            await asyncio.sleep(HEALTH_PUSH_S)
            if self._watched:
                await self._refresh("health")
                if time.monotonic() - last_set_aside >= SET_ASIDE_PUSH_S:
                    last_set_aside = time.monotonic()
                    await self._refresh("set_aside")

    def _rules(self) -> Optional[Rules]:
        """The rules in force: those of the pipeline's checks stage (swapped on reload)."""
        return next((stage.rules for stage in getattr(getattr(self.agent, "pipeline", None), "stages", [])
                     if isinstance(stage, ChecksStage)), None)

    def _marks(self) -> dict[str, list[tuple[str, float]]]:
        """First-notification and SRDL levels of the fluoroscopy quantities, from the rules in force."""
        rules = self._rules()
        if rules is None:
            return {}
        out: dict[str, list[tuple[str, float]]] = {}
        for quantity in ("KAP", "Ka_r", "fluoro_time"):
            rows = rules.select(["notification_first", "SRDL"], modality="XA", quantity=quantity)
            out[quantity] = sorted((MARK_LABELS[r.kind], float(r.threshold)) for r in rows)
        return out

    # -- what the page shows (blocking: called in the executor) ----------------------------
    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite_utils.Database]:
        db = self.agent.store.reader()
        try:
            yield db
        finally:
            db.conn.close()

    def alerts(self, open_only: bool = False, limit: Optional[int] = 50) -> list[dict[str, Any]]:
        """Alerts newest first (only unacknowledged ones with ``open_only``; ``limit=None``: all of them),
        with their accession number.  Open critical alerts are all there, however many newer warnings
        there are: a page (re)loading must never lose one from its banner."""
        with self._reader() as db:
            found = list_alerts(db, acknowledged=False if open_only else None, limit=limit)
            if open_only:
                shown = {a.id for a in found}
                found += [a for a in list_alerts(db, acknowledged=False, severity="critical") if a.id not in shown]
                found.sort(key=lambda a: a.raised_at, reverse=True)
            return views.with_accession(db, [a.to_dict() for a in found])

    def studies(self) -> list[dict[str, Any]]:
        """The last studies with their key doses coloured against the reference levels in force."""
        rules = self._rules()
        with self._reader() as db:
            studies = views.recent_studies(db, show_patient_names=self.cfg.show_patient_names)
            for study in studies:
                uid = study["study_instance_uid"]
                refs = views.references(db, rules, self.agent.cfg.station.id, uid) if rules and uid else {}
                # list_alerts(study_instance_uid=None) is every alert: a study without a UID has none of its own
                alerts = list_alerts(db, study_instance_uid=uid) if uid else []
                views.colour(study, [a.to_dict() for a in alerts], refs)
            return studies

    def set_aside(self) -> dict[str, Any]:
        """The dose reports of the last day that could not be read or re-used a stored SOP Instance UID with
        other doses (no dose check ran for them), and how many non-dose objects were set aside."""
        with self._reader() as db:
            # (written as receipts write their time, agent.pipeline.utc_iso, for the text comparison)
            since = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - SET_ASIDE_WINDOW_S))
            return views.set_aside(db, since)

    def snapshot(self) -> dict[str, Any]:
        station = self.agent.cfg.station
        return {
            "station": station.id, "site": station.site, "csrf": self.access.csrf, "sound": self.cfg.sound,
            "timezone": station.timezone or system_zone(),
            # every open alert: the banner's "+ N more open alerts: show all" lists each one with its
            # Acknowledge button, so a page (re)loading behind a burst must not drop the older ones
            "reasons": REASONS, "alerts": self.alerts(open_only=True, limit=None), "studies": self.studies(),
            "procedure": self.procedure, "health": self.health(), "alarms": list(self.alarms),
            "set_aside": self.set_aside(),
        }

    def health(self) -> dict[str, Any]:
        """Each part's state; ``ok`` (and /healthz 200) needs the store writable, the pipeline's worker
        not stuck on one object and DICOM listening.

        A broker that cannot be reached or a meter unplugged makes the agent ``degraded``, not unhealthy:
        it goes on receiving and buffering.  A part whose health cannot be read counts as not ok.
        """
        parts = {name: _guarded(fn) for name, fn in (
            ("pipeline", self._pipeline_health), ("store", self._store_health), ("dicom", self._dicom_health),
            ("broker", self._broker_health),
            ("backlog", self._backlog_health), ("serial", self._serial_health))}
        ok = parts["store"]["ok"] is True and parts["pipeline"]["ok"] is True and parts["dicom"]["ok"] is not False
        degraded = any(p["ok"] is False for p in parts.values())
        return {"ok": ok, "status": "ok" if ok and not degraded else ("degraded" if ok else "failing"),
                "station": self.agent.cfg.station.id, "checked_at": _utcnow(), "parts": parts}

    def _store_health(self) -> dict[str, Any]:
        if self.agent.pipeline.stuck():  # it may hold the store: do not wait behind it
            return {"ok": False, "detail": "not checked: the pipeline's worker is stuck"}
        problem = self.agent.store_problem()
        return {"ok": True} if problem is None else {"ok": False, "detail": problem}

    def _pipeline_health(self) -> dict[str, Any]:
        pipeline = self.agent.pipeline
        return {"ok": pipeline.running and not pipeline.stuck(), "waiting": pipeline.pending(),
                "busy_s": round(pipeline.busy_for(), 1)}

    def _dicom_health(self) -> dict[str, Any]:
        dicom = self.agent.dicom
        if dicom is None:
            return {"ok": None, "detail": "not running"}
        listening = dicom.server is not None
        health = {"ok": listening, "port": dicom.port, "ae_title": dicom.cfg.ae_title,
                  "associations": dicom.active() if listening else 0}
        if dicom.cfg.tls_port is not None:
            health["tls_port"] = dicom.tls_port
        return health

    def _broker_health(self) -> dict[str, Any]:
        uplink = getattr(self.agent, "uplink", None)
        if uplink is None:
            return {"ok": None, "detail": "not running"}
        link = uplink.health()
        return dict(link, ok=bool(link.get("connected")))

    def _backlog_health(self) -> dict[str, Any]:
        with self._reader() as db:
            counts = outbox.counts(db)
        return {"ok": counts.get("dead", 0) == 0, "pending": counts.get("pending", 0),
                "inflight": counts.get("inflight", 0), "dead": counts.get("dead", 0)}

    def _serial_health(self) -> dict[str, Any]:
        serial = getattr(self.agent, "serial", None)
        devices = [dict(h, device=name) for name, h in serial.health().items()] if serial is not None else []
        # a meter over its range is connected but not measuring: the technologist must not trust its gauge
        ok = all(d.get("connected") and not d.get("overload") for d in devices) if devices else None
        return {"ok": ok, "devices": devices}

    # -- what the page changes -------------------------------------------------------------
    def acknowledge(self, alert_id: str, by: str, reason: Optional[str], note: Optional[str]) -> dict[str, Any]:
        """Record who acknowledged ``alert_id`` and why (checks.alerts.acknowledge), then tell everyone."""
        with self.agent.store.transaction() as tx:
            alert = _as_dict(acknowledge(tx, alert_id, by, reason, note))
        # a typed reason may name the patient (the store keeps it; the outbox has it redacted): only a listed one is logged
        log.info("alert_acknowledged", alert_id=alert_id, by=by, via="console",
                 reason=reason if reason in REASONS or not reason else "(typed)")
        self.agent.bus.publish("ack", alert)
        self.agent.bus.publish("outbox", None)
        return alert

    def new_procedure(self, device: Optional[str]) -> dict[str, Any]:
        """Start a new fluoroscopy procedure on the DAP meter ``device`` (id or port; None: every DAP meter).

        The serial source publishes the new procedure's zeroed reading, which resets the gauges."""
        serial = getattr(self.agent, "serial", None)
        if serial is None:
            raise LookupError("no DAP meter is configured on this station")
        started = serial.new_procedure(device)
        if not started:
            raise LookupError("no DAP meter is configured on this station")
        log.info("procedure_started", device=device, procedure_ids=started, via="console")
        return {"procedure_ids": started}


def _guarded(part: Any) -> dict[str, Any]:
    try:
        return part()
    except Exception as exc:
        log.warning("health_part_failed", part=part.__name__, error=str(exc))
        return {"ok": False, "error": str(exc)}


def _as_dict(obj: Any) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def system_zone() -> Optional[str]:
    """The agent's IANA time zone: ``TZ`` when it names one (as the agent's own local-time rules, staff
    quarters, use it), else ``/etc/localtime`` → ``…/zoneinfo/Europe/Zurich``; or None."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            from zoneinfo import ZoneInfo
            ZoneInfo(name)
            return name
        except (ValueError, OSError, KeyError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return None
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else None
