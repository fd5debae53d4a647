"""``alara-edge run``: assemble the stages and run them until SIGTERM/SIGINT.

Sources → pipeline (extraction → stages in one transaction) → store and outbox → sinks.
Under systemd (``Type=notify``) it reports READY when listening, pings the watchdog only
from the loop that checks the store and the DICOM listener, and reports STOPPING.
"""
from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import sdnotify
import structlog

from agent import config as config_mod
from agent import logs
from agent.bus import Bus
from agent.checks import ChecksStage, load_rules
from agent.console import Console
from agent.console.access import TokenError
from agent.commands.common import add_config_argument, load_config
from agent.config import Config
from agent.pipeline import Pipeline
from agent.readings.hooks import checks_hooks
from agent.readings.reconcile import Reconcile
from agent.sources.dicom.scp import DicomSource
from agent.sources.dicom.tls import TlsSetupError
from agent.sources.serial import SerialSource
from agent.startup import Startup
from agent.store import Store, StoreError, first_unwritable
from agent.store.failed import prune_rejected
from agent.uplink import ReportOutboxStage, Uplink
from agent.uplink.privacy import SiteSecretError

HELP = "run the agent in the foreground (Ctrl-C or SIGTERM stops it cleanly)"

log = structlog.get_logger("agent.daemon")

# what stops a start in one clear line, without a traceback: another agent holds the store, a path not
# writable, the site secret unusable (run and import say it alike, start_error)
START_ERRORS = (StoreError, OSError, sqlite3.Error, SiteSecretError, TokenError)
RELOADABLE = {"checks"}  # configuration sections that SIGHUP applies to the running agent
HEALTH_S = 5.0  # health check and watchdog ping interval (WatchdogSec in the unit is larger)
HOUSEKEEPING_S = 3600.0  # rejected objects past their retention are pruned at start, then this often


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--demo", action="store_true",
                        help="also run a simulated modality that sends a synthetic dose report every few seconds")
    parser.add_argument("--demo-interval", type=float, default=10.0, metavar="SECONDS", help=argparse.SUPPRESS)


class Agent:
    """The running agent: every stage, built from one :class:`Config`."""

    def __init__(self, cfg: Config, with_sources: bool = True, startup: Startup | None = None):
        self.cfg = cfg
        self.bus = Bus()
        self._prune_after = 0  # where housekeeping goes on in a backlog of rejected objects
        quota = int(cfg.store.quota_mb * 1024 * 1024) if cfg.store.quota_mb else None
        self.store = Store.open(cfg.store.path, quota_bytes=quota, startup=startup, spool_dir=cfg.store.spool_dir)
        self.checks = ChecksStage(load_rules(cfg.checks))
        # stages run in this order inside the transaction that stores each report
        self.pipeline = Pipeline(self.store, cfg.store.spool_dir, cfg.station.id, self.bus,
                                 stages=[self.checks, Reconcile.from_config(cfg)])
        if cfg.mqtt.enabled:  # the report's outbox row, after the stages that add alerts and findings
            reports = ReportOutboxStage(cfg)
            reports.check_site_secret(self.store.db)
            self.pipeline.stages.append(reports)
        self.dicom = (DicomSource(cfg.dicom, self.pipeline, healthy=self.accepting)
                      if cfg.dicom.enabled and with_sources else None)
        self.components: list[Any] = []  # started in order, stopped in reverse (stop() is safe unstarted)
        self.uplink: Uplink | None = None
        if cfg.mqtt.enabled and with_sources:
            self.uplink = Uplink(cfg, self.store, self.bus)
            self.components.append(self.uplink)
        self.serial: SerialSource | None = None
        if cfg.serial and with_sources:
            on_cumulative, on_staff = checks_hooks(lambda: self.checks.rules, cfg.station.id)  # follows SIGHUP reloads
            self.serial = SerialSource.from_config(cfg, self.store, self.bus, on_cumulative=on_cumulative,
                                                   on_staff_total=on_staff)
            self.components.append(self.serial)
        self.console: Console | None = None
        if cfg.console.enabled and with_sources:  # last: starts after what it shows, stops before it
            self.console = Console(cfg.console, self)
            self.components.append(self.console)
        self.reloaders: list[Callable[[Config], None]] = [lambda new: self.checks.reload(new.checks)]
        if self.dicom is not None:  # renewed certificate files (the paths are those the agent started with)
            self.reloaders.append(lambda new: self.dicom.reload_tls())

    def store_writable(self) -> bool:
        return self.store_problem() is None

    def store_problem(self) -> Optional[str]:
        """Why the store, or the spool its objects are kept in, cannot take a write now (None: it can)."""
        if self.store.damaged:  # no watchdog ping: systemd's restart checks the file and moves it aside
            return (f"store {self.store.path} is damaged ({self.store.damaged}): restart the agent (the watchdog "
                    "does): it moves the file aside, kept, and stores what waits in the inbox")
        denied = self.store.unwritable() or first_unwritable(Path(self.cfg.store.spool_dir))
        if denied is not None:
            return f"{denied} is not writable (read-only file system, or its owner or mode)"
        try:
            with self.store.transaction() as tx:
                tx.execute("SELECT 1")
            return None
        except Exception as exc:
            return f"store: {exc}"

    def accepting(self) -> bool:
        """C-ECHO's answer: the store is writable and an object sent now would be taken (disk space,
        quota, the worker not held up by a refused object)."""
        return self.store_writable() and self.pipeline.can_accept()

    def problems(self) -> list[str]:
        """Why the agent is not healthy (empty when it is): what the systemd watchdog depends on."""
        out = []
        if not self.pipeline.running:
            out.append("pipeline worker not running")
        elif self.pipeline.stuck():
            out.append(f"pipeline worker stuck on one object for {self.pipeline.busy_for():.0f} s")
        problem = None if out else self.store_problem()  # (not behind a stuck worker: it may hold the store)
        if problem:
            out.append(problem)
        if self.dicom is not None and self.dicom.server is None:
            out.append("DICOM not listening")
        return out

    def healthy(self) -> bool:
        return not self.problems()

    def start(self, startup: Startup | None = None) -> None:
        """Start the pipeline's worker, the DICOM source, then the components in order. Raises
        ``OSError`` if a port cannot be bound; :meth:`stop` then stops what had started."""
        startup = startup or Startup()
        startup.step("opening the inbox (what the last run received and did not process)")
        self.pipeline.start()  # first what an earlier run received and did not process
        startup.step("starting the DICOM listener and the components")
        if self.dicom:
            self.dicom.start()
        for component in self.components:
            component.start()

    def stop(self) -> None:
        if self.dicom:
            self.dicom.stop()  # finish in-flight associations before the sinks go
        self.pipeline.stop()  # and process what they sent
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception:
                log.exception("component_stop_failed", component=type(component).__name__)
        self.store.close()

    def housekeeping(self) -> bool:
        """Delete rejected objects kept longer than ``[store] rejected_retention_days`` (the store refusing
        is logged; they are tried again next time).  True if some are left for the next call: a backlog
        is pruned a few thousand at a time, so that the watchdog's pings go on in between."""
        try:
            pruned = prune_rejected(self.store, self.pipeline.failed_dir, self.pipeline.spool_dir,
                                    self.cfg.store.rejected_retention_days, after=self._prune_after)
        except (StoreError, sqlite3.Error) as exc:
            log.error("rejected_prune_failed", error=str(exc))
            self._prune_after = 0
            return False
        self._prune_after = pruned.resume_after if pruned.more else 0  # past those left, not them again
        return pruned.more

    def reload(self, cfg: Config) -> None:
        for reload in self.reloaders:
            reload(cfg)


def start_error(exc: BaseException) -> str:
    """One of :data:`START_ERRORS` as one line (a file error names its file)."""
    return f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    # The pipeline's worker extracts in pure Python while pynetdicom's threads wait on sockets and
    # poll every millisecond; with the default 5 ms switch interval each of their wake-ups could wait
    # 5 ms for the interpreter lock. 1 ms keeps C-STOREs flowing (bench/scp_ingest.py: +10-15 %).
    sys.setswitchinterval(0.001)
    logs.configure(cfg.logging.level, fmt=cfg.logging.format)
    notifier = sdnotify.SystemdNotifier()
    startup = Startup(notifier.notify)  # until READY: systemd hears that start-up work (a migration) goes on
    with startup:
        try:
            agent = Agent(cfg, startup=startup)
        except START_ERRORS as exc:
            hint = ({"hint": "the agent's user must be able to write the store's directory and files: run it as their "
                             "owner (installed: systemctl start alara-edge) or set [store] path and spool_dir"}
                    if isinstance(exc, PermissionError) else {})
            # one line, no traceback
            log.error("agent_start_failed", error=start_error(exc), store=str(cfg.store.path), **hint)
            return 1
        except Exception as exc:  # a fault of ours: still one JSON line, with the traceback in it
            log.exception("agent_start_failed", error=f"{type(exc).__name__}: {exc}")
            return 1
        stop = threading.Event()
        reload_requested = threading.Event()
        wake = threading.Event()  # a signal wakes the main loop at once (a reload applies to the next report)

        def on_signal(flag: threading.Event) -> Callable[..., None]:
            return lambda *_: (flag.set(), wake.set())

        signal.signal(signal.SIGTERM, on_signal(stop))
        signal.signal(signal.SIGINT, on_signal(stop))
        signal.signal(signal.SIGHUP, on_signal(reload_requested))

        try:
            agent.start(startup)
        except TlsSetupError as exc:
            log.error("agent_start_failed", error=str(exc), hint="the files must be PEM, readable by the agent's user")
            agent.stop()
            return 1
        except (StoreError, sqlite3.Error) as exc:  # the inbox cannot be opened: a full disk, say
            log.error("agent_start_failed", error=str(exc), store=str(cfg.store.path))
            agent.stop()
            return 1
        except OSError as exc:
            log.error("agent_start_failed", error=f"cannot listen: {exc.strerror or exc}",
                      hint="is another agent or DICOM receiver running? set [dicom] port or [console] port")
            agent.stop()
            return 1
    demo = None
    if args.demo:
        from simulator.modality import DemoModality

        demo = DemoModality("127.0.0.1", agent.dicom.port if agent.dicom else cfg.dicom.port,
                            cfg.dicom.ae_title, interval_s=args.demo_interval)
        demo.start()
    log.info("agent_started", station=cfg.station.id, site=cfg.station.site, store=str(cfg.store.path),
             dicom_port=agent.dicom.port if agent.dicom else None,
             dicom_tls_port=agent.dicom.tls_port if agent.dicom else None, demo=bool(args.demo),
             startup_s=round(startup.took_s(), 1))
    notifier.notify("READY=1")
    if startup.told:
        notifier.notify("STATUS=")  # the step shown while starting is over
    try:
        next_health = time.monotonic() + HEALTH_S
        unhealthy, unhealthy_since = logs.Repeats(), None
        next_housekeeping = time.monotonic()
        while not stop.is_set():
            if time.monotonic() >= next_housekeeping:
                more = agent.housekeeping()
                next_housekeeping = time.monotonic() + (HEALTH_S if more else HOUSEKEEPING_S)
            wake.wait(max(0.0, next_health - time.monotonic()))
            wake.clear()
            if stop.is_set():
                break
            if reload_requested.is_set():
                reload_requested.clear()
                _reload(agent, args)
            if time.monotonic() < next_health:
                continue
            next_health = time.monotonic() + HEALTH_S
            problems = agent.problems()
            if not problems:
                notifier.notify("WATCHDOG=1")
                if unhealthy_since is not None:
                    log.info("agent_healthy_again", unhealthy_s=round(time.monotonic() - unhealthy_since))
                    unhealthy_since = None
            else:  # no watchdog ping: systemd restarts the agent after WatchdogSec
                unhealthy_since = unhealthy_since or time.monotonic()
                times = unhealthy.note(tuple(problems))  # not a line every 5 s for hours
                if times is not None:
                    log.error("agent_unhealthy", problems=problems, times=times)
    finally:
        notifier.notify("STOPPING=1")
        log.info("agent_stopping")
        if demo:
            demo.stop()
        agent.stop()
        log.info("agent_stopped")
    return 0


def _reload(agent: Agent, args: argparse.Namespace) -> None:
    try:
        cfg = config_mod.load(getattr(args, "config", None))
    except config_mod.ConfigError as exc:  # each problem in the log line itself (stderr is not the journal's JSON)
        log.error("reload_failed", reason="configuration invalid; keeping the previous one", problems=exc.problems)
        return
    except OSError as exc:
        log.error("reload_failed", reason=f"configuration unreadable; keeping the previous one: {exc}")
        return
    try:
        agent.reload(cfg)
        log.info("reloaded")
    except Exception as exc:
        log.error("reload_failed", reason=str(exc))
        return
    waiting = [name for name in type(cfg).model_fields
               if name not in RELOADABLE and getattr(cfg, name) != getattr(agent.cfg, name)]
    if waiting:  # the running agent keeps what it started with; say so rather than seem to apply it
        log.warning("reload_restart_needed", sections=waiting,
                    hint="only [checks] applies on reload; restart the agent for the rest (systemctl restart alara-edge)")
