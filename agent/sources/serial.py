"""The serial source: dosimeters on serial lines, read live, stored reading by reading.

One thread per configured ``[[serial]]`` port.  Each thread opens the port by the configured path
(resolving ``/dev/serial/by-id`` / ``by-path`` links anew at every attempt, so a re-enumerated adapter
is found again), with an exclusive lock and the configured DTR/RTS levels set before opening; then it
sends what the driver asks for, feeds it what arrives, and commits each batch of readings in one store
transaction (:class:`agent.readings.ledger.Ledger`) before publishing on the bus.  Any
``SerialException``/``OSError`` means the device is gone: the port is closed and reopened with
exponential back-off (0.5 s doubling up to ``reconnect_max_s``).  Garbage, partial frames, checksum
failures, timeouts and device errors are counted per kind (:meth:`SerialSource.health`) and logged
(the first of each kind, then a summary at most once a minute, and the end of a repeated one);
nothing a device sends can stop the thread.

Wiring (the daemon)::

    source = SerialSource.from_config(cfg, store, bus, on_cumulative=..., on_staff_total=...)
    # = SerialSource(cfg.serial, store, bus, station=cfg.station.id, timezone=cfg.station.timezone, ...)
    source.start()        # returns at once; threads run until stop()
    source.health()       # {device: {connected, last_reading_at, readings, reconnects, errors{kind: n}, ...}}
    source.new_procedure("dap-1")   # the console's "new patient" (device id or port; None: every DAP meter)
    source.stop()

``on_cumulative(tx, procedure_id, quantity, value, unit)`` and
``on_staff_total(tx, wearer_id, body_part, quarter, total_mSv)`` run inside the reading's transaction
and return lists of alerts, published as ``("alert", alert)`` after the commit.  The bus also gets
``("reading", gauge)`` after every committed batch (current procedure totals and latest values) and
``("outbox", None)`` when something was queued for the central site.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any, Optional
from zoneinfo import ZoneInfo

import serial
import structlog

import drivers
from agent.bus import Bus
from agent.config import SerialPortConfig
from agent.logs import Repeats
from agent.readings.ledger import CumulativeHook, DeviceContext, Ledger, StaffHook, utc_iso
from agent.store import Store, StoreError
from drivers.base import Driver, Problem, Reading

log = structlog.get_logger("agent.sources.serial")

READ_TIMEOUT_S = 0.02
HOUSEKEEPING_S = 5.0
PRUNE_EVERY_S = 3600.0
SUMMARY_EVERY_S = 60.0
UNSAVED_MAX = 10_000  # readings kept in memory while the store refuses writes (hours at one a second)


class SerialSource:
    """Every configured serial dosimeter; see the module docstring for the wiring."""

    def __init__(self, ports: list[SerialPortConfig], store: Store, bus: Optional[Bus] = None, *,
                 station: str = "station", timezone: Optional[str] = None,
                 on_cumulative: Optional[CumulativeHook] = None, on_staff_total: Optional[StaffHook] = None):
        self.store = store
        self.bus = bus or Bus()
        self.station = station
        self.ledger = Ledger(on_cumulative, on_staff_total)
        tz = ZoneInfo(timezone) if timezone else None
        ids = [p.device_id for p in ports]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"two [[serial]] devices share the id(s) {sorted(duplicates)}: set device = ...")
        self.workers = [PortWorker(cfg, self._context(cfg, tz), self) for cfg in ports]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_config(cls, cfg: Any, store: Store, bus: Optional[Bus] = None, *,
                    on_cumulative: Optional[CumulativeHook] = None,
                    on_staff_total: Optional[StaffHook] = None) -> "SerialSource":
        """The source for a whole :class:`agent.config.Config` (its ``serial`` list and ``station``)."""
        return cls(cfg.serial, store, bus, station=cfg.station.id, timezone=cfg.station.timezone,
                   on_cumulative=on_cumulative, on_staff_total=on_staff_total)

    def _context(self, cfg: SerialPortConfig, tz) -> DeviceContext:
        role = cfg.resolved_role
        return DeviceContext(station=self.station, device=cfg.device_id, driver=cfg.driver, port=cfg.port,
                             role=role, subject=cfg.wearer if role == "staff" else (cfg.location or cfg.device_id),
                             body_part=cfg.body_part, max_gap_s=cfg.max_gap_s, tz=tz)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        for worker in self.workers:
            t = threading.Thread(target=worker.run, name=f"serial-{worker.ctx.device}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.workers:
            t = threading.Thread(target=self._housekeeping, name="serial-housekeeping", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("serial_source_started", devices=[w.ctx.device for w in self.workers])

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        log.info("serial_source_stopped")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True if stop was requested."""
        return self._stop.wait(seconds)

    def health(self) -> dict[str, dict[str, Any]]:
        """Per device: connected, last reading time, counters of readings, reconnects and errors."""
        return {w.ctx.device: w.health() for w in self.workers}

    # -- the console's "new patient" ----------------------------------------------------------------------
    def new_procedure(self, which: Optional[str] = None) -> list[str]:
        """Start a new procedure on the DAP meter(s) named by device id or port (None: all); returns their ids."""
        started = []
        for w in self.workers:
            if w.ctx.role != "dap_meter" or which not in (None, w.ctx.device, w.cfg.port, w.resolved):
                continue
            with self.store.transaction() as tx:
                uid = self.ledger.new_procedure(tx, w.ctx, time.time())
            started.append(uid)
            self.bus.publish("reading", {"station": self.station, "device": w.ctx.device, "role": "dap_meter",
                                         "procedure_id": uid, "dap_Gym2": 0.0, "air_kerma_Gy": 0.0})
            self.bus.publish("outbox", None)
        if which is not None and not started:
            raise KeyError(f"no DAP meter {which!r}")
        return started

    # -- storing ----------------------------------------------------------------------------------------
    def commit(self, ctx: DeviceContext, readings: list[Reading]) -> None:
        """Store one batch and publish what it changed (raises StoreError if the store refuses)."""
        with self.store.transaction() as tx:
            recorded = self.ledger.record(tx, ctx, readings)
        self.bus.publish("reading", recorded.gauge)
        for alert in recorded.alerts:
            self.bus.publish("alert", alert)
        if recorded.alerts or recorded.enqueued:
            self.bus.publish("outbox", None)

    def _housekeeping(self) -> None:
        last_prune = 0.0
        while not self._stop.wait(HOUSEKEEPING_S):
            try:
                now = time.time()
                with self.store.transaction() as tx:
                    queued = self.ledger.flush_minutes(tx, self.station, now)
                    if now - last_prune >= PRUNE_EVERY_S:
                        for w in self.workers:
                            self.ledger.prune(tx, w.ctx.device, now - w.cfg.raw_retention_days * 86400)
                        last_prune = now
                if queued:
                    self.bus.publish("outbox", None)
            except StoreError as exc:
                log.error("serial_housekeeping_failed", error=str(exc))


class PortWorker:
    """One device: open, pump bytes between port and driver, commit readings, reconnect on loss."""

    def __init__(self, cfg: SerialPortConfig, ctx: DeviceContext, source: SerialSource):
        self.cfg = cfg
        self.ctx = ctx
        self.source = source
        self.driver: Driver = drivers.create(cfg.driver, ctx.device, cfg.driver_options, cfg.poll_interval_s)
        self.connected = False
        self.resolved: Optional[str] = None
        self.last_reading_at: Optional[float] = None
        self.readings = 0
        self.reconnects = 0
        self.errors: Counter[str] = Counter()
        self._unsaved: list[Reading] = []  # readings the store refused, retried first (at most UNSAVED_MAX)
        self._retry_at = 0.0
        self._logged = Repeats()  # each kind of problem: the first logged, then a summary at most once a minute
        self._episodes: dict[str, tuple[float, float, int]] = {}  # kind: (started at, last seen at, count before)
        self.overload_at: Optional[float] = None  # the device last said it is over its range (dose unmeasured)

    def health(self) -> dict[str, Any]:
        overload = self.overload_at is not None and (self.last_reading_at is None or self.overload_at > self.last_reading_at)
        return {"port": self.cfg.port, "resolved": self.resolved, "driver": self.cfg.driver, "role": self.ctx.role,
                "connected": self.connected, "overload": overload, "readings": self.readings, "reconnects": self.reconnects,
                "last_reading_at": utc_iso(self.last_reading_at) if self.last_reading_at else None,
                "errors": dict(self.errors), "info": dict(self.driver.info)}

    def run(self) -> None:
        backoff = 0.5
        opened_once = False
        while not self.source.stopping:
            try:
                port = self.open()
            except (serial.SerialException, OSError, ValueError) as exc:
                self._problem(Problem("open_failed", str(exc)))
                if self.source.wait(backoff):
                    break
                backoff = min(backoff * 2, self.cfg.reconnect_max_s)
                continue
            if opened_once:
                self.reconnects += 1
            opened_once = True
            backoff = 0.5
            self.connected = True
            for kind in ("open_failed", "disconnected"):  # their end is this line
                self._episodes.pop(kind, None)
            log.info("serial_connected", device=self.ctx.device, port=self.cfg.port, resolved=self.resolved,
                     baudrate=port.baudrate)
            try:
                self.pump(port)
            except (serial.SerialException, OSError) as exc:
                self._problem(Problem("disconnected", str(exc)))
            except Exception:  # a bug must not end the thread: log it and reconnect
                self.errors["internal"] += 1
                log.exception("serial_worker_failed", device=self.ctx.device)
            finally:
                self.connected = False
                try:
                    port.close()
                except Exception:
                    pass
            self.source.wait(backoff)

    def open(self) -> serial.Serial:
        """Open the configured path (links resolved now), lines set before open, input flushed.

        The resolved path is the one opened, so that ``resolved`` names the device in use even when a
        by-id link is being re-created (re-enumeration) between resolving and opening."""
        self.resolved = os.path.realpath(self.cfg.port)
        line = self.driver.line_settings()
        port = serial.Serial()
        port.port = self.resolved
        port.baudrate = self.cfg.baudrate or line.baudrate
        port.bytesize, port.parity, port.stopbits = line.bytesize, line.parity, line.stopbits
        port.rtscts, port.xonxoff = line.rtscts, line.xonxoff
        port.timeout = READ_TIMEOUT_S
        port.write_timeout = 1.0
        port.exclusive = self.cfg.exclusive
        if self.cfg.dtr is not None:
            port.dtr = self.cfg.dtr
        if self.cfg.rts is not None:
            port.rts = self.cfg.rts
        port.open()
        port.reset_input_buffer()
        self.driver.reopened(time.time())
        return port

    def pump(self, port: serial.Serial) -> None:
        """Until stop or an exception: write what the driver wants, read what arrives, commit readings."""
        while not self.source.stopping:
            outgoing, items = self.driver.tick(time.time())
            if outgoing:
                port.write(outgoing)
            data = port.read(1)
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
                items = items + self.driver.feed(data, time.time())
            self.handle(items)

    def handle(self, items: list) -> None:
        readings = [i for i in items if isinstance(i, Reading)]
        for problem in (i for i in items if isinstance(i, Problem)):
            self._problem(problem)
        if self._episodes:
            self._end_episodes(time.monotonic())
        if not readings and not (self._unsaved and time.monotonic() >= self._retry_at):
            return
        batch = self._unsaved + readings  # in order: what the store refused before, then what is new
        try:
            self.source.commit(self.ctx, batch)
        except StoreError as exc:  # disk full, I/O: keep them (bounded) and try again with the next ones
            dropped = max(0, len(batch) - UNSAVED_MAX)
            self._unsaved = batch[dropped:]
            self._retry_at = time.monotonic() + 1.0
            detail = f"{exc}; {len(self._unsaved)} reading(s) kept to store later"
            self._problem(Problem("store_error", detail + (f", the {dropped} oldest dropped" if dropped else "")))
            if dropped:
                self.errors["unsaved_dropped"] += dropped
            return
        self._unsaved = []
        self.readings += len(batch)
        self.last_reading_at = batch[-1].time

    def _end_episodes(self, now: float) -> None:
        """Log ``serial_problem_ended`` for each kind of problem that came more than once and not for
        :data:`SUMMARY_EVERY_S`: the log says when garbage on the line (say) stopped, not only when it began."""
        for kind, (started, last, before) in list(self._episodes.items()):
            if now - last < SUMMARY_EVERY_S:
                continue
            del self._episodes[kind]
            count = self.errors[kind] - before
            if count > 1:
                log.info("serial_problem_ended", device=self.ctx.device, kind=kind, count=count,
                         lasted_s=round(last - started), quiet_s=round(now - last))

    def _problem(self, problem: Problem) -> None:
        """Count it; log the first of its kind, then at most one summary a minute (its end: :meth:`_end_episodes`)."""
        self.errors[problem.kind] += 1
        if problem.kind == "overload":  # until the next reading: the dose now is not being measured
            self.overload_at = time.time()
        now = time.monotonic()
        started, _, before = self._episodes.get(problem.kind, (now, now, self.errors[problem.kind] - 1))
        self._episodes[problem.kind] = (started, now, before)
        if self._logged.note(problem.kind, SUMMARY_EVERY_S) is None:
            return
        level = log.error if problem.kind in ("store_error", "overload") else log.warning  # overload: dose unmeasured
        level("serial_problem", device=self.ctx.device, kind=problem.kind, detail=problem.detail,
              raw=problem.raw[:32].hex(" ") if problem.raw else None, count=self.errors[problem.kind])
