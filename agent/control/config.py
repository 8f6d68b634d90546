"""Config models for writes: a device's ``control:``, an uplink's command options and the
top-level ``schedules:``; and their cross-checks against the devices' profiles.

``agent/config.py`` plugs these in; :func:`check_control` reports ``FILE:LINE`` problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from drivers import protocols
from drivers.errors import WriteRefused
from drivers.profile import Profile
from drivers.protocols import plan_write
from drivers.yamlsource import Problem, Source, did_you_mean

from ..units import Duration, parse_duration

if TYPE_CHECKING:
    from ..config import Config

SUN_EVENTS = ("dawn", "sunrise", "sunset", "dusk")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_SUN = re.compile(r"^(dawn|sunrise|sunset|dusk)\s*(?:([+-])\s*(\S+))?$")
SetValue = StrictBool | StrictInt | StrictFloat  # "60" is not 60: a value's type is part of it


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone '{name}' (IANA names such as Asia/Shanghai)") from exc
    return name


class DeviceControl(Strict):
    allow: list[str] = Field(default_factory=list,
                             description="the writable profile points that may be written (default: none)")
    min_toggle: dict[str, Duration] = Field(
        default_factory=dict, description="relay point → shortest time between two switchings")

    @model_validator(mode="after")
    def _toggle_allowed(self) -> DeviceControl:
        for point in self.min_toggle:
            if point not in self.allow:
                raise ValueError(f"min_toggle names '{point}', which 'allow' does not list")
        return self


class CommandOptions(BaseModel):
    """An uplink's command settings (mixed into the MQTT uplink model)."""

    commands: bool = Field(False, description="accept write commands from this platform")
    command_key_file: str | None = Field(
        None, description="HMAC-SHA256 key file: commands must carry a valid 'sig' (see docs/control.md)")
    command_max_age: Duration | None = Field(
        None, description="refuse as expired a command whose 'ts' is older than this (commands must then carry 'ts')")


@dataclass(frozen=True, slots=True)
class StepTime:
    """When a step fires: a local clock time, or a sun event plus an offset in seconds."""

    event: Literal["clock", "dawn", "sunrise", "sunset", "dusk"]
    hour: int = 0
    minute: int = 0
    offset: float = 0.0

    def __str__(self) -> str:
        if self.event == "clock":
            return f"{self.hour:02d}:{self.minute:02d}"
        if not self.offset:
            return self.event
        sign = "+" if self.offset > 0 else "-"
        return f"{self.event}{sign}{abs(self.offset) / 60:g}m"


def parse_step_time(text: str) -> StepTime:
    text = text.strip()
    m = _CLOCK.match(text)
    if m:
        return StepTime("clock", int(m.group(1)), int(m.group(2)))
    m = _SUN.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a step time (examples: \"00:30\", sunset+10m, sunrise-10m, dusk)")
    offset = 0.0
    if m.group(2):
        offset = parse_duration(m.group(3)) * (1 if m.group(2) == "+" else -1)
        if abs(offset) >= 12 * 3600:
            raise ValueError(f"'{text}': an offset must be under 12h")
    return StepTime(m.group(1), offset=offset)  # type: ignore[arg-type]


class Location(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)] = Field(description="latitude, degrees north")
    lon: Annotated[float, Field(ge=-180, le=180)] = Field(description="longitude, degrees east")


class Step(Strict):
    at: str = Field(description='"HH:MM" local time, or sunset/sunrise/dusk/dawn with an offset: sunset+10m')
    set: dict[str, SetValue] = Field(description="point → value for every device of the schedule")

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 00:30 as 30 (base 60)
            raise ValueError(f"{value} is not a step time: quote clock times, e.g. \"00:30\"")
        parse_step_time(str(value))
        return str(value)

    @field_validator("set")
    @classmethod
    def _not_empty(cls, value: dict[str, SetValue]) -> dict[str, SetValue]:
        if not value:
            raise ValueError("a step sets at least one point")
        return value

    @property
    def time(self) -> StepTime:
        return parse_step_time(self.at)


class Schedule(Strict):
    devices: list[str] = Field(min_length=1, description="device ids the steps apply to")
    location: Location | None = Field(None, description="where the poles stand (needed by sun-based steps)")
    timezone: str | None = Field(None, description="IANA time zone of the steps (default: gateway.timezone)")
    steps: list[Step] = Field(min_length=1, description="what to set when, every day")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @model_validator(mode="after")
    def _location(self) -> Schedule:
        if self.location is None and any(s.time.event != "clock" for s in self.steps):
            raise ValueError("steps at sunrise/sunset need 'location: {lat, lon}'")
        return self


def check_control(cfg: Config, source: Source, profiles: dict[str, Profile], base: Path) -> list[Problem]:
    """Cross-checks: allowed points exist and are writable, key files exist, schedule steps are valid."""
    problems = _check_devices(cfg, source, profiles)
    f = source.file
    for up_id, up in cfg.uplinks.items():
        key_file = getattr(up, "command_key_file", None)  # MQTT uplinks only
        if key_file and not (base / key_file).is_file():
            problems.append(Problem(f, source.line_of(("uplinks", up_id, "command_key_file")),
                                    f"uplinks.{up_id}.command_key_file", f"file not found: {key_file}"))
    for name, sched in cfg.schedules.items():
        problems += _check_schedule(cfg, source, profiles, name, sched)
    return problems


def _check_devices(cfg: Config, source: Source, profiles: dict[str, Profile]) -> list[Problem]:
    problems: list[Problem] = []
    for dev_id, dev in cfg.devices.items():
        profile = profiles.get(dev_id)
        if dev.control is None or profile is None:
            continue
        for i, point in enumerate(dev.control.allow):
            where = ("devices", dev_id, "control", "allow", str(i))
            message = _not_writable(profile, point)
            if message:
                problems.append(Problem(source.file, source.line_of(where), f"devices.{dev_id}.control.allow",
                                        message))
        for point in dev.control.min_toggle:
            p = profile.points.get(point)
            if p is not None and p.type_name != "bool":
                problems.append(Problem(source.file, source.line_of(("devices", dev_id, "control", "min_toggle",
                                                                     point)),
                                        f"devices.{dev_id}.control.min_toggle.{point}",
                                        "min_toggle applies to relay (true/false) points only"))
    return problems


def _not_writable(profile: Profile, point: str) -> str | None:
    p = profile.points.get(point)
    if p is None:
        return f"profile {profile.name} has no point '{point}'{did_you_mean(point, profile.points)}"
    protocol = protocols.of(profile)
    if not protocol.writes:
        return f"profile {profile.name} is {protocol.title}: its points cannot be written"
    if not getattr(p, "writable", False):
        writable = [n for n, q in profile.points.items() if getattr(q, "writable", False)]
        return (f"point '{point}' of profile {profile.name} is not writable"
                f" (writable: {', '.join(writable) or 'none'})")
    return None


def _check_schedule(cfg: Config, source: Source, profiles: dict[str, Profile], name: str,
                    sched: Schedule) -> list[Problem]:
    problems: list[Problem] = []
    f = source.file
    for i, dev_id in enumerate(sched.devices):
        if dev_id not in cfg.devices:
            problems.append(Problem(f, source.line_of(("schedules", name, "devices", str(i))),
                                    f"schedules.{name}.devices",
                                    f"unknown device '{dev_id}'{did_you_mean(dev_id, cfg.devices)}"))
    for s, step in enumerate(sched.steps):
        for point, value in step.set.items():
            where = ("schedules", name, "steps", str(s), "set", point)
            for dev_id in sched.devices:
                dev, profile = cfg.devices.get(dev_id), profiles.get(dev_id)
                if dev is None or profile is None:
                    continue
                allow = dev.control.allow if dev.control else []
                if point not in allow:
                    message = (f"device {dev_id} does not allow writing '{point}'"
                               f"{did_you_mean(point, allow)} (add it to devices.{dev_id}.control.allow)")
                else:
                    try:
                        plan_write(profile, point, value)
                        continue
                    except WriteRefused as exc:
                        message = f"device {dev_id}: {exc}"
                problems.append(Problem(f, source.line_of(where), f"schedules.{name}.steps.{s}.set.{point}",
                                        message))
    return problems
