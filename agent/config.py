"""The configuration: one YAML file, validated by these models (unknown keys forbidden).

``load_config`` returns the validated config with every device's profile resolved, or
raises :class:`SourceError` listing each problem as ``FILE:LINE: dotted.path: message``.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict, Field, field_validator, model_validator

from drivers.profile import Profile
from drivers.yamlsource import Problem, SourceError, did_you_mean, load_source, validate

from .alarms.config import AlarmRule, ReportPoint, check_alarms
from .control.config import CommandOptions, DeviceControl, Schedule, check_control, check_timezone
from .health.settings import Health, Metrics
from .units import Duration, Size
from .uplinks.hj212.config import Hj212Uplink
from .uplinks.reconnect import Reconnect

MIN_INTERVAL, MAX_INTERVAL = 0.1, 86400.0  # a poll or retry period: 100 ms .. 1 day
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Gateway(Strict):
    id: Id = Field(description="gateway id, used in topics and payloads")
    data_dir: str = Field("/var/lib/edge-agent",
                          description="where the SQLite buffer lives: a writable directory (created if missing),"
                                      " held by one running agent at a time")
    location: str | None = Field(None, description="free text or 'lat,lon' published in metadata")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone: local days, schedules, local times shown")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)


class BusCommon(Strict):
    timeout: Duration = Field(0.5, description="per-request timeout")
    retries: Annotated[int, Field(ge=0, le=5)] = Field(1, description="retries per request")
    inter_frame_delay: Duration | None = Field(
        None, description="silence after each transaction (default: 3.5 characters on serial, 0 on TCP)")


class SerialBus(BusCommon):
    type: Literal["serial"]
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 (stable: /dev/serial/by-id/...)")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        9600, description="every slave on the line must use the same speed")
    parity: Literal["N", "E", "O"] = Field("N", description="none, even or odd")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class TcpBus(BusCommon):
    type: Literal["tcp"]
    host: str = Field(description="Modbus TCP device or gateway")
    port: Annotated[int, Field(ge=1, le=65535)] = 502


class RtuOverTcpBus(BusCommon):
    type: Literal["rtu-over-tcp"]
    host: str = Field(description="the serial-to-Ethernet converter")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(502, description="its TCP port (transparent mode)")


Bus = Annotated[SerialBus | TcpBus | RtuOverTcpBus, Field(discriminator="type")]


class Device(Strict):
    bus: str = Field(description="id of a bus in 'buses'")
    unit: Annotated[int, Field(ge=0, le=247)] | None = Field(None, description="Modbus unit id")
    address: str | None = Field(None, description="DL/T 645 meter address (12 digits)")
    profile: str = Field(description="catalog profile name, or a path to a profile YAML file")
    interval: Duration = Field(10.0, description="poll interval, 100ms to 24h")
    location: str | None = Field(None, description="published in the device's metadata")
    enabled: bool = Field(True, description="false: keep the entry but do not poll")
    control: DeviceControl | None = Field(None, description="writes allowed to this device (default: none)")
    report: dict[str, ReportPoint] = Field(
        default_factory=dict, description="report by exception per point (deadband, max_silence), for uplinks"
                                          " with on_change: true")

    @model_validator(mode="after")
    def _address(self) -> Device:
        if self.unit is None and self.address is None:
            raise ValueError("a device needs 'unit' (Modbus) or 'address' (DL/T 645)")
        return self

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not MIN_INTERVAL <= value <= MAX_INTERVAL:
            raise ValueError(f"interval must be between 100ms and 1 day (24h), not {value:g}s")
        return value


class Tls(Strict):
    ca: str | None = Field(None, description="CA bundle that signs the broker (must exist); default: system CAs")
    cert: str | None = Field(None, description="client certificate (mutual TLS)")
    key: str | None = Field(None, description="client private key (mutual TLS)")
    insecure: bool = Field(False, description="skip hostname verification (never in production)")

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mutual TLS needs both 'cert' and 'key'")
        return self


TOPIC_FIELDS = ("prefix", "gateway", "device", "profile")


def check_topic_template(template: str, allowed: tuple[str, ...] = TOPIC_FIELDS) -> str:
    """A topic template uses only ``{prefix}``, ``{gateway}``, ``{device}``, ``{profile}``."""
    if not template or template.startswith("$") or any(c in template for c in "+#\0"):
        raise ValueError(f"'{template}' is not a topic to publish to (empty, '$...', or a wildcard)")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"'{template}': {exc}") from exc
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown placeholder '{{{name}}}' in '{template}' (placeholders:"
                             f" {', '.join('{' + a + '}' for a in allowed)}){did_you_mean(name, allowed)}")
    return template


class Topics(Strict):
    telemetry: str | None = Field(None, description="native: {prefix}/{gateway}/up/{device}")
    meta: str | None = Field(None, description="native: {prefix}/{gateway}/meta/{device} (retained)")
    status: str | None = Field(None, description="{prefix}/{gateway}/status (retained birth and will)")
    health: str | None = Field(None, description="native: {prefix}/{gateway}/health (retained completeness)")

    @field_validator("telemetry", "meta")
    @classmethod
    def _device_topic(cls, value: str | None) -> str | None:
        return None if value is None else check_topic_template(value)

    @field_validator("status", "health")
    @classmethod
    def _status_topic(cls, value: str | None) -> str | None:
        return None if value is None else check_topic_template(value, ("prefix", "gateway"))


def _protocol(value: object) -> object:
    """``protocol: 5`` in YAML is a number; it means the same as ``"5"``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 5:
        return "5"
    return value


class MqttUplink(Strict, CommandOptions, Reconnect):
    type: Literal["mqtt"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="default 8883 with TLS, 1883 without")
    tls: Tls | bool | None = Field(
        None, description="TLS settings; default: on for every host that is not loopback")
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(_protocol)] = Field(
        "5", description="MQTT version; only v5 reports a refused publish (e.g. ACL denial)")
    client_id: str | None = Field(None, description="default: <gateway id>-<uplink id>")
    username: str | None = Field(None, description="login name; the password comes from password_file or password_env")
    password_file: str | None = Field(None, description="file holding the password (never logged); must exist; mode 600"
                                          " (others may not read it)")
    password_env: str | None = Field(None, description="environment variable holding the password")
    topic_prefix: str = Field("edge", description="{prefix} in topic templates")
    topics: Topics = Field(default_factory=Topics, description="topic templates (defaults per format)")
    format: Literal["native", "thingsboard"] = Field("native", description="payload format")
    keepalive: Duration = Field(
        30.0, description="MQTT keepalive: the broker sends the last will after 1.5 times this in silence")
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = Field(
        20, description="messages handed to the MQTT client before a PUBACK")
    ack_timeout: Duration = Field(
        20.0, description="reconnect when the oldest unacknowledged publish is older than this;"
                          " also the limit for connecting (TCP, TLS handshake, CONNACK)")
    refused_retry: Duration = Field(
        30.0, description="after the broker refuses a publish (e.g. ACL), retry that topic this often (100ms to 24h)")
    live_batch: Annotated[int, Field(ge=1, le=100)] = Field(10, description="live readings per message at most")
    backlog_batch: Annotated[int, Field(ge=1, le=10000)] = Field(
        500, description="readings per message when catching up after an outage")
    backlog_rate: Annotated[float, Field(ge=0)] = Field(
        50000, description="backlog readings per second at most (0: unlimited)")
    on_change: bool = Field(False, description="report by exception: only values that moved beyond their point's"
                                               " deadband, plus a heartbeat every max_silence (devices.<id>.report)")

    @model_validator(mode="after")
    def _secrets(self) -> MqttUplink:
        if self.password_file and self.password_env:
            raise ValueError("give 'password_file' or 'password_env', not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a 'username'")
        self._check_reconnect()
        if not MIN_INTERVAL <= self.refused_retry <= MAX_INTERVAL:
            raise ValueError("refused_retry must be between 100ms and 1 day (24h)")
        if self.ack_timeout < 1:
            raise ValueError("ack_timeout must be at least 1s")
        if self.format == "native" and self.topics.meta is not None and "{device}" not in self.topics.meta:
            raise ValueError("topics.meta must contain {device}: native metadata is one retained message per device")
        return self

    @property
    def tls_enabled(self) -> bool:
        if self.tls is None:
            return not is_loopback(self.host)
        return self.tls is not False

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls_enabled else 1883)


Uplink = Annotated[MqttUplink | Hj212Uplink, Field(discriminator="type")]


class Buffer(Strict):
    max_bytes: Size = Field(ByteSize(256 * 1024**2), description="cap on the buffer, WAL included")
    commit_interval: Duration = Field(0.25, description="group commit period (at most 250ms)")

    @model_validator(mode="after")
    def _bounds(self) -> Buffer:
        if self.max_bytes < 256 * 1024:
            raise ValueError("max_bytes must be at least 256KiB")
        if not 0.001 <= self.commit_interval <= 0.25:
            raise ValueError("commit_interval must be between 1ms and 250ms")
        return self


class Logging(Strict):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")


class Clock(Strict):
    step: Duration = Field(10.0, description="a jump of the system time by more than this (back or forward) is"
                                             " logged, and readings are held until the time is known good again")

    @field_validator("step")
    @classmethod
    def _step(cls, value: float) -> float:
        if not 1.0 <= value <= 3600.0:
            raise ValueError("step must be between 1s and 1h")
        return value


class Config(Strict):
    gateway: Gateway
    buses: dict[Id, Bus] = Field(default_factory=dict)
    devices: dict[Id, Device] = Field(default_factory=dict)
    uplinks: dict[Id, Uplink] = Field(default_factory=dict)
    buffer: Buffer = Field(default_factory=Buffer)
    logging: Logging = Field(default_factory=Logging)
    clock: Clock = Field(default_factory=Clock)
    schedules: dict[Id, Schedule] = Field(default_factory=dict)
    alarms: dict[Id, AlarmRule] = Field(default_factory=dict, description="edge alarms, evaluated on every reading")
    health: Health = Field(default_factory=Health, description="the retained health topic (completeness)")
    metrics: Metrics | None = Field(None, description="optional Prometheus endpoint on loopback (default: off)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class LoadedConfig:
    config: Config
    file: Path
    profiles: dict[str, Profile]  # device id → profile
    warnings: list[Problem]
    text: str

    def points(self) -> int:
        return sum(len(p.points) for p in self.profiles.values())

    @property
    def data_dir(self) -> Path:
        """``gateway.data_dir``; a relative one is relative to the config file."""
        data_dir = Path(self.config.gateway.data_dir)
        if not data_dir.is_absolute():
            data_dir = self.file.resolve().parent / data_dir
        return data_dir


def load_config(path: str | Path) -> LoadedConfig:
    """Load, validate and cross-check a config file. Raises SourceError on any problem."""
    source = load_source(path)
    cfg: Config = validate(Config, source)
    base = Path(path).resolve().parent
    from .config_checks import cross_check  # beside the models it checks

    profiles, problems, warnings = cross_check(cfg, source, base)
    problems += check_control(cfg, source, profiles, base)
    problems += check_alarms(cfg, source, profiles)
    if problems:
        raise SourceError(problems, warnings)
    return LoadedConfig(cfg, Path(path), profiles, warnings, Path(path).read_text(encoding="utf-8"))


__all__ = [
    "Config",
    "Hj212Uplink",
    "LoadedConfig",
    "MqttUplink",
    "RtuOverTcpBus",
    "SerialBus",
    "TcpBus",
    "load_config",
]
