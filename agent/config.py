"""Configuration: one TOML file, validated with pydantic, every key documented here.

Unknown keys are errors (a typo in a threshold must not silently fall back to a default).
With no file at all the agent runs on the defaults below.  ``check_file`` reports every
problem with its key and, where it can be found, its line.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import tomllib
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Optional, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from agent.checks.tables import ExamRule, LevelRow


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _as_written(cls, value: Any, info: ValidationInfo) -> Any:
        """No coercion that hides a slip: ``port = true`` is not port 1, ``sound = "no"`` not true,
        ``enabled = 0`` not false, ``port = "104"`` not a number."""
        field = cls.model_fields.get(info.field_name or "")
        kinds = _kinds(field.annotation) if field else set()
        if isinstance(value, bool) and bool not in kinds and kinds & {int, float, Decimal}:
            raise ValueError(f"a number, not {str(value).lower()}")
        if kinds and kinds <= {bool, type(None)}:
            if isinstance(value, str):
                raise ValueError("true or false, without quotes")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                raise ValueError(f"true or false, not {value}")
        if isinstance(value, str) and kinds and kinds <= {int, float, Decimal, type(None)}:
            raise ValueError("a number, without quotes")
        return value


def _kinds(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (Optional[int] → {int, NoneType}, Literal["a", "b"] → {str});
    the like of list or dict → empty."""
    if get_origin(annotation) in (Union, UnionType):
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    if get_origin(annotation) is Literal:  # else Optional[Literal["room", ...]] would look like Optional[bool]
        return {type(a) for a in get_args(annotation)}
    return {annotation} if isinstance(annotation, type) else set()


class StationConfig(Section):
    site: str = "site"
    """Site (hospital) id in topics and payloads."""
    id: str = Field(default_factory=lambda: re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "station")
    """Station id: one agent per modality or room."""
    timezone: Optional[str] = None
    """IANA zone for local-time rules (staff quarters); default: the system's."""

    @field_validator("site", "id")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-' (it becomes an MQTT topic level)")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}: use an IANA name such as 'Europe/Zurich'") from None
        return v


class DicomConfig(Section):
    enabled: bool = True
    ae_title: str = "ALARA_EDGE"
    bind: str = "0.0.0.0"
    port: int = Field(default=11112, ge=0, le=65535)
    allowed_calling_aes: list[str] = []
    """Calling AE titles allowed to associate; empty = any."""
    max_associations: int = Field(default=10, ge=1, le=200)
    acse_timeout_s: float = Field(default=30, gt=0)
    dimse_timeout_s: float = Field(default=60, gt=0)
    network_timeout_s: float = Field(default=60, gt=0)
    header_only_above_mb: float = Field(default=64, gt=0, le=512)
    """An object larger than this (MiB), other than an SR, is kept without its pixel data, cut off as it is
    received: only the header is read, and a 1-3 GB tomosynthesis object would not fit the inbox."""
    tls_port: Optional[int] = Field(default=None, ge=0, le=65535)
    """A second listener that speaks DICOM over TLS (1.2 or later), e.g. 2762; same AE title and rules."""
    tls_bind: Optional[str] = None
    """Address of the TLS listener; default: ``bind``."""
    tls_cert_file: Optional[Path] = None
    tls_key_file: Optional[Path] = None
    """The agent's certificate (chain) and private key, PEM."""
    tls_ca_file: Optional[Path] = None
    """CA certificates (PEM) of the modalities: given, every sender must present a certificate they signed."""

    @model_validator(mode="after")
    def _tls(self) -> "DicomConfig":
        if self.tls_port is None:
            given = [k for k in ("tls_bind", "tls_cert_file", "tls_key_file", "tls_ca_file") if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)} without tls_port: set tls_port to listen for DICOM over TLS")
        elif self.tls_cert_file is None or self.tls_key_file is None:
            raise ValueError("tls_port needs tls_cert_file and tls_key_file")
        elif self.tls_port == self.port and self.tls_port != 0 and (self.tls_bind or self.bind) == self.bind:
            raise ValueError("tls_port must differ from port")
        return self

    @field_validator("bind", "tls_bind")
    @classmethod
    def _bind(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else bind_address(v)

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        if not (1 <= len(v) <= 16) or "\\" in v or not v.strip() or not (v.isascii() and v.isprintable()):
            raise ValueError("an AE title is 1-16 printable ASCII characters, no backslash")
        return v

    @field_validator("allowed_calling_aes")
    @classmethod
    def _aes(cls, v: list[str]) -> list[str]:
        for ae in v:
            cls._ae(ae)
        return v


class StoreConfig(Section):
    path: Path = Path("var/alara-edge.sqlite")
    spool_dir: Path = Path("var/spool")
    """Received objects, fsync'd before their report is committed; failed ones move to ``failed/`` beside it."""
    quota_mb: Optional[float] = Field(default=None, gt=0)
    """Database plus spool; when reached, new C-STOREs get 0xA700 (nothing stored is dropped)."""
    rejected_retention_days: float = Field(default=30, ge=0)
    """Rejected objects (no dose in them: images a router forwarded, non-dose SRs) are deleted from
    ``failed/`` this long after they arrived; 0 keeps them for ever.  Unreadable ones are never deleted."""


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class ChecksConfig(Section):
    """Dose checks (agent.checks); docs/dose-checks.md explains each setting to a physicist."""

    enabled: bool = True
    """Run the dose checks on every stored report."""
    defaults: bool = True
    """Use the built-in values (AAPM CT notification values, CT alert value 1000 mGy, NCRP 168
    fluoroscopy thresholds, NRC-model investigational levels) and exam-matching rules.  A configured
    row of the same kind and quantity replaces the built-in ones."""
    tables: list[Path] = []
    """Reference-level tables to activate (TOML files of ``[[checks.level]]``/``[[checks.exam]]``
    rows, e.g. ``config/reference-levels/*.toml``); relative paths are from the working directory."""
    level: list[LevelRow] = []
    """Reference values written here directly (``[[checks.level]]``), e.g. local DRLs."""
    exam: list[ExamRule] = []
    """Exam-matching rules (``[[checks.exam]]``), tried in order before the built-in ones."""
    median_window: int = Field(default=20, ge=1, le=1000)
    """median_above_drl: the rolling median is over the last N examinations (or sequences, for
    per-sequence rows) of one station × exam × patient group, and only once N are there."""
    exam_drl_factor: Decimal = Field(default=Decimal(1), gt=0)
    """exam_above_drl fires when one examination reaches factor × DRL (1 = the DRL itself)."""
    adult_age_years: Decimal = Field(default=Decimal(18), gt=0)
    """Age from which a patient is an adult; reports without an age count as adult."""
    stats_age_bands_years: list[Decimal] = [Decimal(1), Decimal(5), Decimal(10), Decimal(15)]
    """Paediatric age bands for ``alara-edge stats`` (band edges in years, below adult_age_years)."""
    stats_min_n: int = Field(default=20, ge=1)
    """``alara-edge stats`` proposes a local DRL (the 75th percentile) only from this many values."""

    @model_validator(mode="after")
    def _tables_load(self) -> "ChecksConfig":
        """Read the listed tables now, so that ``check-config`` reports their problems too."""
        if not (self.tables or self.level or self.exam):
            return self
        from agent.checks.rules import RulesError, load_rules

        try:
            load_rules(self)
        except RulesError as exc:
            raise ValueError(str(exc)) from None
        return self


class MqttConfig(Section):
    """Uplink to the central broker (agent.uplink); the central receiver uses the same keys to reach it."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "alara"
    """Topics are ``{topic_prefix}/{site}/{station}/{report|alert|ack|reading|status}``."""
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: Optional[str] = None
    """Default ``alara-edge-{site}-{station}``."""
    keepalive_s: int = Field(default=30, ge=2, le=3600)
    """A silent broker is noticed after 1.5-2 times this."""
    window: int = Field(default=50, ge=1, le=100)
    """Messages out at once (published, PUBACK not yet committed locally): the most one failure can duplicate.
    Of them at most the broker's Receive Maximum (Mosquitto: max_inflight_messages, 20) unacknowledged;
    a window above it keeps sending while PUBACKs are committed, which drains a backlog faster (see docs/uplink.md)."""
    rate_per_s: float = Field(default=100, ge=0)
    """Drain pace in messages per second, so that a backlog cannot overflow a subscriber's queue; 0 = unpaced.
    A burst is at most one second's worth (and at most ``window``)."""
    ack_timeout_s: float = Field(default=60, gt=0)
    """No PUBACK for this long: the connection is dropped and the message sent again."""
    reconnect_min_s: float = Field(default=1, gt=0)
    reconnect_max_s: float = Field(default=60, gt=0)
    """Reconnect delay doubles from min to max; each wait is drawn at random from [delay/2, delay]."""
    require_subscriber: bool = True
    """MQTT 5 PUBACK 0x10 (no matching subscribers): keep the message and retry later instead of counting it sent."""
    status_interval_s: float = Field(default=60, gt=0)
    """How often the retained status message is refreshed."""
    retention_days: float = Field(default=30, ge=0)
    """Delivered outbox rows and the spooled DICOM files of delivered reports are deleted this long after delivery."""
    tls: bool = False
    """TLS with the system's CAs; implied by ``ca_file`` or ``cert_file``."""
    ca_file: Optional[Path] = None
    cert_file: Optional[Path] = None
    key_file: Optional[Path] = None
    """Client certificate and key (PEM), for brokers with ``require_certificate true``."""
    username: Optional[str] = None
    password_file: Optional[Path] = None
    """The password is read from this file (first line) ..."""
    password_env: Optional[str] = None
    """... or from this environment variable; never written in the configuration itself."""

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", v):
            raise ValueError("topic levels of letters, digits, '.', '_' or '-', separated by '/', no wildcards")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return bind_address(v)  # mqtts://broker:8883 is a host, a port and tls = true here

    @model_validator(mode="after")
    def _pairs(self) -> "MqttConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


class PrivacyConfig(Section):
    """What of a patient's identity may leave the box (agent.uplink). Name and birth date never do."""

    patient_id: Literal["pseudonymise", "omit", "include"] = "pseudonymise"
    """pseudonymise: keyed HMAC-SHA256 with the site secret (the central site can link a patient's exams
    without learning who it is); omit: not sent; include: the patient id as the modality sent it."""
    secret_file: Optional[Path] = None
    """The per-site secret (default: ``site-secret`` beside the store database); created (random, mode 0600)
    on first use if missing. Copy it to every station of a site so that their pseudonyms match."""


class SerialPortConfig(Section):
    """One ``[[serial]]`` table: a dosimeter on a serial line (drivers/, agent.sources.serial, docs/drivers.md).

    Keys not listed here are the driver's own options (e.g. ``profile`` for ``generic``, ``model`` and
    ``cpm_per_usv_h`` for ``gmc``) and are validated by the driver.
    """

    model_config = ConfigDict(extra="allow")  # driver options are validated by the driver
    driver: str
    """diamentor | automess | gmc | mightyohm | radpro | generic"""
    port: str
    """Prefer ``/dev/serial/by-id/...`` (or ``/dev/serial/by-path/...`` for adapters without a serial
    number): the link is resolved again at every reconnect, so re-enumeration does not matter."""
    baudrate: Optional[int] = Field(default=None, gt=0)
    """Default: the driver's (or the profile's)."""
    device: Optional[str] = None
    """Id of the device in readings and logs; default: the wearer, the location or the port's name."""
    role: Optional[Literal["dap_meter", "staff", "room"]] = None
    """dap_meter: per-procedure DAP/Ka,r for fluoroscopy checks; staff: a wearer's quarterly dose;
    room: a location's dose.  Default: staff with ``wearer``, dap_meter for DAP drivers, else room."""
    wearer: Optional[str] = None
    """Staff member's dosimetry id (a badge number, never a name)."""
    location: Optional[str] = None
    """Room or location id, for role = room."""
    body_part: Literal["whole_body", "lens", "extremity", "skin"] = "whole_body"
    poll_interval_s: Optional[float] = Field(default=None, gt=0)
    """Polling drivers: seconds between measurement requests (default: the driver's)."""
    dtr: Optional[bool] = None
    """Set DTR before opening (some devices reset or change mode when it toggles); None: OS default."""
    rts: Optional[bool] = None
    exclusive: bool = True
    """Lock the port so no second program can steal half of the bytes."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Reconnect back-off ceiling (it starts at 0.5 s and doubles)."""
    max_gap_s: float = Field(default=10.0, gt=0)
    """Dose-rate integration: a silence longer than this credits no dose (the device may have been away)."""
    raw_retention_days: float = Field(default=30.0, gt=0)
    """Raw samples are kept locally this long; aggregates and procedure totals stay."""
    reconcile_tolerance: float = Field(default=0.25, gt=0)
    """DAP meters: a QA finding when |meter − RDSR| / RDSR of a procedure's DAP exceeds this."""
    reconcile_window_s: float = Field(default=900.0, ge=0)
    """DAP meters: an RDSR matches a procedure whose dose falls within its events' times ± this."""
    reconcile_plane: Optional[Literal["A", "B"]] = None
    """DAP meters on a biplane system: the plane whose tube the meter is on (a biplane RDSR is compared with
    that plane's events; without it, not at all)."""

    @model_validator(mode="after")
    def _driver_and_subject(self) -> "SerialPortConfig":
        import drivers

        try:
            drivers.validate_options(self.driver, self.model_extra or {})
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        except ValidationError as exc:
            known = [*type(self).model_fields, *drivers.get(self.driver).Options.model_fields]
            raise ValueError("driver options: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {_option_problem(e, known)}" for e in exc.errors())) from None
        if self.wearer and self.location:
            raise ValueError("a dosimeter has a wearer or a location, not both")
        if self.resolved_role == "staff" and not self.wearer:
            raise ValueError("role = 'staff' needs a wearer id")
        return self

    @property
    def resolved_role(self) -> str:
        if self.role:
            return self.role
        if self.wearer:
            return "staff"
        import drivers

        return "dap_meter" if drivers.primary_quantity(self.driver, self.driver_options) == "dap" else "room"

    @property
    def device_id(self) -> str:
        return self.device or self.wearer or self.location or Path(self.port).name

    @property
    def driver_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _option_problem(err: Any, known: list[str]) -> str:
    """A driver option's problem; for a misspelt key, the nearest key of ``[[serial]]`` or the driver."""
    return _unknown(err["loc"][-1], known) if err["type"] == "extra_forbidden" else err["msg"]


def _unknown(key: Any, known: list[str]) -> str:
    """The message for a key that is not one of ``known``, with the nearest of them (``prot`` → ``port``)."""
    near = difflib.get_close_matches(str(key), known, n=1)
    return f"unknown key; did you mean {near[0]!r}?" if near else "unknown key"


def bind_address(value: str) -> str:
    """An address to listen on or connect to: an IP address or a host name, without a port (that is ``port``)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", value):
        raise ValueError(f"{value!r} is not an IP address or host name (the port is a key of its own)")
    return value


class ConsoleConfig(Section):
    """The technologist's console page (agent.console, docs/console.md)."""

    enabled: bool = True
    bind: str = "127.0.0.1"
    """Address the page listens on. Anything but loopback requires ``token`` or ``token_file``."""
    port: int = Field(default=8377, ge=0, le=65535)
    token: Optional[SecretStr] = None
    """Token or PIN asked once per browser (then kept in a cookie); required when bound beyond loopback."""
    token_file: Optional[Path] = None
    """File holding the token (first line), instead of ``token`` in this file."""
    show_patient_names: bool = False
    """Show patient names in the study list (default: accession number and exam only)."""
    sound: bool = True
    """Sound a tone in the browser when an alert is raised."""

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        return bind_address(v)

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> "ConsoleConfig":
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        if self.token is not None and len(self.token.get_secret_value().strip()) < 4:
            raise ValueError("token: use at least 4 characters")
        if self.enabled and not is_loopback(self.bind) and self.token is None and self.token_file is None:
            raise ValueError(f"bind = {self.bind!r} is reachable from the network: set token or token_file")
        return self


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CentralConfig(Section):
    """The central receiver (``alara-edge central``); it reaches the broker with the ``[mqtt]`` keys."""

    database: str = "var/central.sqlite"
    """A SQLite file path, or a ``postgresql://`` URL."""
    client_id: str = "alara-central"
    """The persistent session's name at the broker: keep it stable."""
    session_expiry_s: int = Field(default=30 * 24 * 3600, ge=0, le=0xFFFFFFFF)
    """How long the broker keeps the session (and queues messages) while the receiver is away (MQTT 5)."""
    shared_group: Optional[str] = None
    """Subscribe as ``$share/{shared_group}/...`` so that several receivers share the load."""

    @field_validator("shared_group")
    @classmethod
    def _group(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-'")
        return v


class Config(Section):
    station: StationConfig = StationConfig()
    dicom: DicomConfig = DicomConfig()
    store: StoreConfig = StoreConfig()
    logging: LoggingConfig = LoggingConfig()
    checks: ChecksConfig = ChecksConfig()
    mqtt: MqttConfig = MqttConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    serial: list[SerialPortConfig] = []
    console: ConsoleConfig = ConsoleConfig()
    central: CentralConfig = CentralConfig()

    @field_validator("serial")
    @classmethod
    def _one_id_per_device(cls, ports: list[SerialPortConfig]) -> list[SerialPortConfig]:
        ids = [p.device_id for p in ports]
        shared = sorted({i for i in ids if ids.count(i) > 1})
        if shared:  # readings, ledgers and alerts are kept per device id
            raise ValueError(f"two [[serial]] entries share the device id(s) {shared}: give each its own device = ...")
        worn = [(p.wearer, p.body_part) for p in ports if p.resolved_role == "staff"]
        twice = sorted({f"{w} ({part})" for w, part in worn if worn.count((w, part)) > 1})
        if twice:  # over and under the apron estimate one dose: their sum would be neither (and a false level)
            raise ValueError(f"two staff dosimeters are worn by {', '.join(twice)} at the same body part: a wearer's "
                             "dose per body part comes from one dosimeter (give the other its own body_part, or leave it out)")
        return ports


def load(path: str | Path | None) -> Config:
    """Load and validate; raises :class:`ConfigError` listing every problem."""
    if path is None:
        return Config()
    text = read_text(path)
    problems = check_text(text)
    if problems:
        raise ConfigError(problems)
    return Config.model_validate(tomllib.loads(text))


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def check_text(text: str) -> list[str]:
    """Every problem in a config text, as ``key (line N): message``; empty if valid."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"TOML syntax: {exc}"]
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            if tuple(err["loc"]) == ("checks",):  # the rules' problems, several lines in one
                out.extend(_table_problems(text, data, err["msg"]))
                continue
            msg = unknown_key(err["loc"]) if err["type"] == "extra_forbidden" else err["msg"]
            out.append(problem_at(text, err["loc"], msg))
        return out
    return []


def _table_problem(data: dict[str, Any], line: str) -> bool:
    """Whether a problem line of ``[checks]`` is about one of the files in ``tables`` (it starts with its path)."""
    checks = data.get("checks")
    tables = checks.get("tables") if isinstance(checks, dict) else None
    return isinstance(tables, list) and any(isinstance(t, str) and line.startswith(f"{t}: ") for t in tables)


def _table_problems(text: str, data: dict[str, Any], msg: str) -> list[str]:
    """The rules' problems (one per line of ``msg``), each as its own problem: those of a listed table
    under ``checks.tables`` and its line, the others under ``checks``."""
    return [problem_at(text, ("checks", "tables") if _table_problem(data, problem) else ("checks",), problem)
            for problem in msg.removeprefix("Value error, ").splitlines()]


def problem_at(text: str, loc: tuple[Any, ...], message: str) -> str:
    """A problem as every one is printed: ``section.key (line N): message`` (the line where it is found)."""
    line = locate(text, loc)
    return f"{'.'.join(str(p) for p in loc)}{f' (line {line})' if line else ''}: {message}"


def unknown_key(loc: tuple[Any, ...]) -> str:
    """The message for a key the model does not have, with the nearest known one (``prot`` → ``port``)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return "unknown key"
        model = next((a for a in (field.annotation, *get_args(field.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return _unknown(loc[-1], list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else [])


def read_text(path: str | Path) -> str:
    """A configuration file's text (UTF-8, a byte order mark allowed); :class:`ConfigError` if it is not
    UTF-8 (an editor that saved it as Latin-1), OSError if it cannot be read."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError([f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8"]) from None


def check_file(path: str | Path) -> list[str]:
    """Every problem of the configuration file at ``path`` (the caller names the file: a file that cannot be
    read gives the reason alone, e.g. "No such file or directory")."""
    try:
        text = read_text(path)
    except OSError as exc:
        return [exc.strerror or str(exc)]
    except ConfigError as exc:
        return exc.problems
    return check_text(text)


def _has_header(text: str, table: list[str]) -> bool:
    """Whether ``text`` has a ``[table]`` or ``[[table]]`` header for the dotted path ``table``."""
    name = r"\s*\.\s*".join(re.escape(t) for t in table)
    return re.search(rf"^\s*\[\[?\s*{name}\s*\]\]?\s*(#.*)?$", text, re.MULTILINE) is not None


def locate(text: str, loc: tuple[Any, ...]) -> Optional[int]:
    """Best-effort line of ``loc`` (``("dicom", "port")``, ``("serial", 1, "baudrate")``,
    ``("checks", "level", 0, "value")``) in a TOML text: the key under its table's header (the
    index-th header of an array of tables), else the header itself.  An index into a list value
    (``("dicom", "allowed_calling_aes", 1)``) has no header: its line is the key's."""
    at = next((n for n, p in enumerate(loc) if isinstance(p, int)), None)
    path = [p for p in (loc if at is None else loc[:at]) if isinstance(p, str)]
    if at is not None and path and not _has_header(text, path):  # an item of a list value: the key's line
        return locate(text, tuple(path))
    rest = [] if at is None else [p for p in loc[at + 1:] if isinstance(p, str)]
    if not path:
        return None
    if at is None and len(path) > 1:
        table, key = path[:-1], path[-1]
    elif at is None:
        table, key = [], path[0]
    else:
        table, key = path, (rest[0] if rest else None)
    lines = text.splitlines()
    if table:
        name = r"\s*\.\s*".join(re.escape(t) for t in table)
        headers = [i for i, line in enumerate(lines) if re.match(rf"\s*\[\[?\s*{name}\s*\]\]?\s*(#.*)?$", line)]
        if not headers:
            return None
        start = headers[loc[at] if at is not None and loc[at] < len(headers) else 0]
    else:
        start = -1  # top-level keys come before any header
    if key is not None:
        for i in range(start + 1, len(lines)):
            if re.match(r"\s*\[", lines[i]):
                break
            if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
                return i + 1
    if not table:  # a whole section or array of tables: its (last) header
        headers = [i for i, line in enumerate(lines) if re.match(rf"\s*\[\[?\s*{re.escape(key)}\s*\]\]?\s*(#.*)?$", line)]
        return headers[-1] + 1 if headers else None
    return start + 1
