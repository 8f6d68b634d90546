"""Config models for edge alarms (top-level ``alarms:``) and report by exception (a device's
``report:``), and their cross-checks against the devices and profiles.

``agent/config.py`` plugs these in; :func:`check_alarms` reports ``FILE:LINE`` problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from drivers.profile import Profile
from drivers.yamlsource import Problem, Source, did_you_mean

from ..units import Duration, format_duration, parse_duration

if TYPE_CHECKING:
    from ..config import Config

Severity = Literal["critical", "major", "warning", "info"]
_RISE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([^\d\s][^\s]*)?\s+in\s+(\S+)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True, slots=True)
class Rise:
    """``rise: 0.2 m in 5m``: the value rose by ``amount`` (in ``unit``, if given) within ``window`` seconds."""

    amount: float
    unit: str | None
    window: float

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.amount:g}{unit} in {format_duration(self.window)}"


def parse_rise(value: object) -> Rise:
    if isinstance(value, Rise):
        return value
    m = _RISE.match(str(value))
    if not m or isinstance(value, bool | int | float):
        raise ValueError(f"'{value}' is not a rate of rise (example: '0.2 m in 5m': amount, optional unit,"
                         " 'in', a duration)")
    window = parse_duration(m.group(3))
    if window <= 0:
        raise ValueError(f"'{value}': the duration after 'in' must be positive")
    amount = float(m.group(1))
    if amount <= 0:
        raise ValueError(f"'{value}': the amount must be positive")
    return Rise(amount, m.group(2), window)


RiseSpec = Annotated[
    Rise,
    BeforeValidator(parse_rise),
    WithJsonSchema({"type": "string", "title": "rate of rise", "pattern": r"^\d+(\.\d+)?\s*\S*\s+in\s+\S+$",
                    "description": "amount, optional unit, 'in', a duration: '0.2 m in 5m'"}),
]


@dataclass(frozen=True, slots=True)
class Deadband:
    """An absolute deadband, or a percentage of the last value sent."""

    amount: float
    percent: bool

    def moved(self, last: float, value: float) -> bool:
        limit = abs(last) * self.amount / 100 if self.percent else self.amount
        return abs(value - last) > limit


def parse_deadband(value: object) -> Deadband:
    if isinstance(value, Deadband):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a deadband cannot be negative")
        return Deadband(float(value), False)
    m = _PERCENT.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a deadband (a number in the point's unit, or a percentage: '2%')")
    return Deadband(float(m.group(1)), True)


DeadbandSpec = Annotated[
    Deadband,
    BeforeValidator(parse_deadband),
    WithJsonSchema({"type": ["number", "string"], "title": "deadband", "pattern": r"^\d+(\.\d+)?\s*%$",
                    "description": "an amount in the point's unit, or a percentage of the last value sent"}),
]


class AlarmRule(BaseModel):
    """One alarm: a condition on one point of one device."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    device: str = Field(description="id of a device in 'devices'")
    point: str = Field(description="a point of the device's profile")
    above: float | None = Field(None, description="raised when the value rises above this")
    below: float | None = Field(None, description="raised when the value falls below this")
    clear_at: float | None = Field(
        None, description="hysteresis: with 'above', cleared when the value falls below this (at or below"
                          " 'above'); with 'below', cleared when it rises above this. Default: the threshold")
    rise: RiseSpec | None = Field(None, description="rate of rise, e.g. '0.2 m in 5m'")
    no_data: Duration | None = Field(None, description="raised when the point had no valid value for this long")
    for_: Duration = Field(0.0, alias="for", description="the condition must hold this long before raising")
    severity: Severity = Field("warning", description="carried in the events")
    fast_poll: Duration | None = Field(
        None, description="the device's poll interval while this alarm is pending or raised")

    @model_validator(mode="after")
    def _one_condition(self) -> AlarmRule:
        given = [k for k in ("above", "below", "rise", "no_data") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an alarm needs exactly one of 'above', 'below', 'rise', 'no_data'"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.clear_at is not None:
            if self.above is not None and self.clear_at > self.above:
                raise ValueError(f"clear_at {self.clear_at:g} must not be above 'above' {self.above:g}"
                                 " (it is where a raised alarm clears, on the way down)")
            if self.below is not None and self.clear_at < self.below:
                raise ValueError(f"clear_at {self.clear_at:g} must not be below 'below' {self.below:g}"
                                 " (it is where a raised alarm clears, on the way up)")
            if self.above is None and self.below is None:
                raise ValueError("clear_at goes with 'above' or 'below'")
        if self.for_ < 0 or self.for_ > 86400:
            raise ValueError("'for' must be between 0 and 1 day (24h)")
        if self.no_data is not None and self.no_data <= 0:
            raise ValueError("no_data must be a positive duration")
        if self.fast_poll is not None and not 0.1 <= self.fast_poll <= 86400:
            raise ValueError("fast_poll must be between 100ms and 1 day (24h)")
        return self

    @property
    def kind(self) -> str:
        for k in ("above", "below", "rise", "no_data"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated: one condition")

    def describe(self) -> str:
        """The condition as a technician writes it."""
        if self.above is not None:
            cond = f"> {self.above:g}" + (f" (clears < {self.clear_at:g})" if self.clear_at is not None else "")
        elif self.below is not None:
            cond = f"< {self.below:g}" + (f" (clears > {self.clear_at:g})" if self.clear_at is not None else "")
        elif self.rise is not None:
            cond = f"rise {self.rise}"
        else:
            cond = f"no data {format_duration(self.no_data or 0)}"
        hold = f" for {format_duration(self.for_)}" if self.for_ else ""
        return f"{self.device}.{self.point} {cond}{hold}"


class ReportPoint(BaseModel):
    """Report by exception for one point, on uplinks with ``on_change: true``."""

    model_config = ConfigDict(extra="forbid")

    deadband: DeadbandSpec | None = Field(
        None, description="send only when the value moved more than this since the last value sent"
                          " (an amount in the point's unit, or '2%')")
    max_silence: Duration | None = Field(None, description="send the value anyway when none was sent for this long")

    @model_validator(mode="after")
    def _something(self) -> ReportPoint:
        if self.deadband is None and self.max_silence is None:
            raise ValueError("give 'deadband' and/or 'max_silence'")
        if self.max_silence is not None and not 0.1 <= self.max_silence <= 7 * 86400:
            raise ValueError("max_silence must be between 100ms and 7 days")
        return self


def check_alarms(cfg: Config, source: Source, profiles: dict[str, Profile]) -> list[Problem]:
    """Alarms name existing devices and numeric points; report settings name existing points."""
    problems: list[Problem] = []
    f = source.file
    for name, rule in cfg.alarms.items():
        where = ("alarms", name)
        if rule.device not in cfg.devices:
            problems.append(Problem(f, source.line_of((*where, "device")), f"alarms.{name}.device",
                                    f"unknown device '{rule.device}'{did_you_mean(rule.device, cfg.devices)}"))
            continue
        profile = profiles.get(rule.device)
        if profile is None:
            continue
        message = _not_numeric(profile, rule.point)
        if message:
            problems.append(Problem(f, source.line_of((*where, "point")), f"alarms.{name}.point", message))
            continue
        unit = profile.unit_of(rule.point)
        if rule.rise is not None and rule.rise.unit and unit and rule.rise.unit != unit:
            problems.append(Problem(f, source.line_of((*where, "rise")), f"alarms.{name}.rise",
                                    f"'{rule.rise}' is in {rule.rise.unit}, point {rule.point} is in {unit}"))
        interval = cfg.devices[rule.device].interval
        if rule.fast_poll is not None and rule.fast_poll > interval:
            problems.append(Problem(f, source.line_of((*where, "fast_poll")), f"alarms.{name}.fast_poll",
                                    f"fast_poll {format_duration(rule.fast_poll)} is slower than the device's"
                                    f" interval {format_duration(interval)}"))
    for dev_id, dev in cfg.devices.items():
        profile = profiles.get(dev_id)
        if profile is None:
            continue
        for point, setting in dev.report.items():
            message = _not_numeric(profile, point) if setting.deadband is not None else None
            if point not in profile.points:
                message = f"profile {profile.name} has no point '{point}'{did_you_mean(point, profile.points)}"
            if message:
                problems.append(Problem(f, source.line_of(("devices", dev_id, "report", point)),
                                        f"devices.{dev_id}.report.{point}", message))
    return problems


def _not_numeric(profile: Profile, point: str) -> str | None:
    p = profile.points.get(point)
    if p is None:
        return f"profile {profile.name} has no point '{point}'{did_you_mean(point, profile.points)}"
    if p.type_name in ("bool", "bit", "string") or getattr(p, "values", None):
        return f"point '{point}' of profile {profile.name} is not a number"
    return None
