"""Simulated devices: each speaks its protocol byte-exactly from a true state driven by a scenario.

A device is advanced with the scenario's current rate (:meth:`SimDevice.advance`), answers what the
host writes (:meth:`SimDevice.receive`) and, for stream devices, emits a frame every ``interval_s``
(:meth:`SimDevice.emit`).  ``truth()`` tells a test what the device really measured, whatever the
line did to the bytes.  Rate units per device are in ``rate_unit``.
"""
from __future__ import annotations

import math
import random
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, ClassVar

from drivers.automess import encode as automess_frame
from drivers.framing import xor8


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson variate (Knuth below 30, normal approximation above)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, int(round(rng.gauss(mean, math.sqrt(mean)))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class SimDevice:
    rate_unit: ClassVar[str]
    stream: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any], rng: random.Random):
        self.options = dict(options)
        self.rng = rng
        self.interval_s = float(self.options.pop("interval_s", 1.0))
        self._next_emit = 0.0
        self._inbuf = bytearray()

    def advance(self, dt: float, rate: float) -> None:
        """Let ``dt`` seconds pass at the true ``rate``."""

    def receive(self, data: bytes) -> list[bytes]:
        """Replies to what the host wrote."""
        return []

    def emit(self, now: float) -> list[bytes]:
        """Frames a stream device sends on its own when ``now`` reaches its next tick."""
        if not self.stream or now < self._next_emit:
            return []
        self._next_emit = max(self._next_emit + self.interval_s, now) if self._next_emit else now + self.interval_s
        return [self.frame()]

    def frame(self) -> bytes:
        """The frame a stream device sends every ``interval_s`` (poll devices send none)."""
        return b""

    def counter_reset(self) -> None:
        """The device's counter goes back to zero (front-panel reset, power cycle, ``SET``)."""

    def banner(self) -> list[bytes]:
        """What the device prints when it (re)starts."""
        return []

    def truth(self) -> dict[str, Any]:
        return {}

    def lines(self, data: bytes) -> list[str]:
        """Complete request lines (CR, LF or CR LF) from the host."""
        self._inbuf += data
        out = []
        while True:
            ends = [i for i in (self._inbuf.find(b"\r"), self._inbuf.find(b"\n")) if i >= 0]
            if not ends:
                break
            end = min(ends)
            out.append(self._inbuf[:end].decode("latin-1"))
            del self._inbuf[:end + 1]
        return [line for line in out if line]


class CountingDevice(SimDevice):
    """A Geiger tube: Poisson counts every second at ``rate`` counts per second."""

    rate_unit = "count/s"

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self._second = 0.0
        self._mean = 0.0
        self.counts_total = 0  # every count the tube made since the start (never reset)
        self.history: deque[int] = deque(maxlen=60)

    def advance(self, dt: float, rate: float) -> None:
        self._second += dt
        self._mean += rate * dt
        while self._second >= 1.0:
            n = poisson(self.rng, self._mean)
            self._second -= 1.0
            self._mean = 0.0
            self.counts_total += n
            self.history.append(n)
            self.on_second(n)

    def on_second(self, n: int) -> None:
        """A whole second of counting ended with ``n`` counts."""

    @property
    def cpm(self) -> int:
        return sum(self.history) * 60 // max(1, len(self.history)) if len(self.history) < 60 else sum(self.history)

    def truth(self) -> dict[str, Any]:
        return {"counts_total": self.counts_total, "cpm": self.cpm}


class Diamentor(SimDevice):
    """PTW DIAMENTOR: ``rate`` in Gy·cm²/s; options ``unit`` (1–4), ``serial``, ``max_display``."""

    rate_unit = "Gy.cm2/s"
    PER_GYCM2 = {1: 100.0, 2: 1.0, 3: 100.0, 4: 1 / 8.76e-3}

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self.unit = int(self.options.get("unit", 1))
        self.serial = str(self.options.get("serial", "000123"))
        self.max_display = float(self.options.get("max_display", 999999.99))
        self.dap = 0.0  # Gy·cm² since the last reset
        self.dap_total = 0.0  # Gy·cm² delivered since the start (never reset)
        self.rate = 0.0
        self.elapsed = 0.0
        self.params = {"PRE": "1013", "TMPA": "20", "KA": "1.3356E11", "KFA": "1.010", "BR": "0"}

    def advance(self, dt: float, rate: float) -> None:
        self.rate = rate
        self.dap += rate * dt
        self.dap_total += rate * dt
        self.elapsed += dt

    def counter_reset(self) -> None:
        self.dap = 0.0
        self.elapsed = 0.0

    def truth(self) -> dict[str, Any]:
        return {"dap_Gycm2": self.dap, "dap_total_Gycm2": self.dap_total, "unit": self.unit}

    def receive(self, data: bytes) -> list[bytes]:
        return [self.answer(line).encode("ascii") + b"\r\n" for line in self.lines(data)]

    def answer(self, command: str) -> str:
        command = command.strip()
        factor = self.PER_GYCM2[self.unit]
        if command == "M":
            dap = self.dap * factor
            if dap > self.max_display:
                return "E4"
            minutes, seconds = divmod(int(self.elapsed), 60)
            return f"M{dap:.2f},{self.rate * factor:.2f},{minutes},{seconds},0.00,0.00,0,0,00000"
        if command == "PTW":
            return "CRS 1.2.4"
        if command == "SER":
            return f"SER{self.serial}"
        if command == "RES":
            self.counter_reset()
            return "RES"
        if command == "U":
            return f"U{self.unit}"
        if len(command) == 2 and command[0] == "U" and command[1] in "1234":
            self.unit = int(command[1])
            return command
        if command == "TST":
            return ""
        if command == "G":
            return "GP"
        if command == "CRC":
            return "CRC0,0"
        for name, value in self.params.items():
            if command == name:
                return f"{name}{value}"
            if command.startswith(name) and command[len(name):].replace(".", "").replace("E", "").isdigit():
                self.params[name] = command[len(name):]
                return command
        return "E1"


class Automess(SimDevice):
    """Automess 6150AD: ``rate`` in µSv/h (or pulses/s for ``detector`` 17/19); options ``detector``, ``noise``."""

    rate_unit = "uSv/h"
    stream = True

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self.detector = int(self.options.get("detector", 20))
        self.noise = float(self.options.get("noise", 0.0))
        self.rate = 0.0
        self.dose_uSv = 0.0

    def advance(self, dt: float, rate: float) -> None:
        self.rate = rate
        self.dose_uSv += rate * dt / 3600

    def frame(self) -> bytes:
        value = self.rate * (1 + self.rng.gauss(0, self.noise)) if self.noise else self.rate
        return automess_frame(self.detector, max(0.0, value))

    def truth(self) -> dict[str, Any]:
        return {"rate_uSv_h": self.rate, "dose_uSv": self.dose_uSv}


class Gmc(CountingDevice):
    """GQ GMC: options ``version`` (e.g. ``GMC-320Re 5.73``: 2-byte CPM; ``GMC-500+Re 1.22``: 4 bytes)."""

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self.version = str(self.options.get("version", "GMC-320Re 5.73"))
        self.width = 2 if self.version.startswith("GMC-3") else 4
        self.heartbeat = False
        self.last_cps = 0

    def on_second(self, n: int) -> None:
        self.last_cps = n

    def emit(self, now: float) -> list[bytes]:
        if not self.heartbeat or now < self._next_emit:
            return []
        self._next_emit = now + 1.0
        return [(self.last_cps & (0x3FFF if self.width == 2 else 0xFFFFFFFF)).to_bytes(self.width, "big")]

    def receive(self, data: bytes) -> list[bytes]:
        self._inbuf += data
        out = []
        while True:
            start = self._inbuf.find(b"<")
            end = self._inbuf.find(b">>", start + 1)
            if start < 0 or end < 0:
                if start < 0:
                    self._inbuf.clear()
                break
            command = self._inbuf[start + 1:end].decode("latin-1")
            del self._inbuf[:end + 2]
            out.extend(self.answer(command))
        return out

    def answer(self, command: str) -> list[bytes]:
        if command == "GETVER":
            return [self.version.encode("ascii")]
        if command == "GETCPM":
            return [min(self.cpm, 2 ** (8 * self.width) - 1).to_bytes(self.width, "big")]
        if command == "GETCPS":
            return [(self.last_cps & (0x3FFF if self.width == 2 else 0xFFFFFFFF)).to_bytes(self.width, "big")]
        if command == "GETSERIAL":
            return [bytes.fromhex("F488007E8B2137")]
        if command in ("HEARTBEAT1", "HEARTBEAT0"):
            self.heartbeat = command.endswith("1")
            self._next_emit = 0.0
            return []
        if command in ("POWERON", "POWEROFF", "ECFG", "CFGUPDATE"):
            return [b"\xaa"]
        return []  # unknown commands: the device says nothing


class MightyOhm(CountingDevice):
    """MightyOhm kit firmware: one line per second; CPM in SLOW/FAST/INST mode; µSv/h = CPM·57/10000."""

    stream = True

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self.fast = bool(self.options.get("fast_mode", True))
        self.last_cps = 0

    def on_second(self, n: int) -> None:
        self.last_cps = n

    def counter_reset(self) -> None:  # a power cycle empties the firmware's 60-s buffer
        self.history.clear()

    def banner(self) -> list[bytes]:
        return [b"mightyohm.com Geiger Counter 1.00\r\n", b"http://mightyohm.com/geiger\r\n"]

    def frame(self) -> bytes:
        cps = self.last_cps
        recent = list(self.history)[-5:]
        if cps > 255:
            mode, cpm = "INST", cps * 60
        elif self.fast and sum(recent) * 12 > 1000:
            mode, cpm = "FAST", sum(recent) * 12
        else:
            mode, cpm = "SLOW", sum(self.history)
        usv = cpm * 57 // 100
        return f"CPS, {cps}, CPM, {cpm}, uSv/hr, {usv // 100}.{usv % 100:02d}, {mode}\r\n".encode("ascii")


class RadPro(CountingDevice):
    """Rad Pro: options ``start_count`` (to test the 2^32 wrap), ``sensitivity`` (cpm per µSv/h)."""

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self.count = int(self.options.get("start_count", 0)) % 2 ** 32
        self.sensitivity = float(self.options.get("sensitivity", 153.8))

    def on_second(self, n: int) -> None:
        self.count = (self.count + n) % 2 ** 32

    def counter_reset(self) -> None:
        self.count = 0

    def truth(self) -> dict[str, Any]:
        return {**super().truth(), "count": self.count}

    def receive(self, data: bytes) -> list[bytes]:
        return [self.answer(line).encode("ascii") + b"\r\n" for line in self.lines(data)]

    def answer(self, command: str) -> str:
        parts = command.split()
        if len(parts) == 2 and parts[0] == "GET":
            value = {
                "deviceId": "FS2011 (simulated);Rad Pro 2.0/en;000000000000000000000000",
                "tubePulseCount": str(self.count),
                "tubeRate": f"{self.cpm:.3f}",
                "tubeSensitivity": f"{self.sensitivity:.3f}",
                "deviceTime": str(int(time.time())),
            }.get(parts[1])
            return f"OK {value}" if value is not None else "ERROR"
        if len(parts) == 3 and parts[:2] == ["SET", "tubePulseCount"] and parts[2].isdigit():
            self.count = int(parts[2]) % 2 ** 32
            return "OK"
        return "ERROR"


class BGeigie(CountingDevice):
    """Safecast bGeigie Nano ``$BNRDD`` sentences (played through the generic driver's example profile)."""

    stream = True

    def __init__(self, options, rng):
        super().__init__(options, rng)
        self.device_id = int(self.options.get("device_id", 1))
        self.total = 0

    def on_second(self, n: int) -> None:
        self.total += n

    def counter_reset(self) -> None:
        self.total = 0

    def truth(self) -> dict[str, Any]:
        return {**super().truth(), "total": self.total}

    def frame(self) -> bytes:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (f"BNRDD,{self.device_id},{stamp},{self.cpm},{sum(list(self.history)[-5:])},{self.total},A,"
                "3543.1917,N,13942.0190,E,25.30,A,9,1")
        return f"${body}*{xor8(body.encode('ascii')):02X}\r\n".encode("ascii")


DEVICES: dict[str, type[SimDevice]] = {
    "diamentor": Diamentor, "automess": Automess, "gmc": Gmc, "mightyohm": MightyOhm, "radpro": RadPro,
    "generic": BGeigie,
}
