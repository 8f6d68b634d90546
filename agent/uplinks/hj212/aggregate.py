"""From readings to HJ 212 values: which point goes out under which code, the period a
reading falls in, and the data flag of a real-time value and of an aggregate.

Data flags: N normal, T over range (the point's ``over_range``), B communication failure
between instrument and logger (a failed poll, or the point's read failed), D fault — an
aggregate is N only when at least 75 % of the readings its period should hold
(period ÷ poll interval) have a valid value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from buffer.reader import Row

from .config import Hj212Uplink
from .factors import FACTORS, multiplier
from .packet import DAY, HOUR, MINUTE

VALID_SHARE = 0.75


@dataclass(frozen=True, slots=True)
class Carried:
    """One point this uplink sends: its device, factor code and unit multiplier."""

    device: str
    point: str
    code: str
    scale: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of one reading: its value (None when the poll or the point failed)."""

    point: Carried
    value: float | None
    over_range: bool


def carried_points(cfg: Hj212Uplink, device_points: dict[str, list[str]]) -> list[Carried]:
    """The points sent, in device order; a factor code already taken by an earlier device is
    left out (one MN reports each factor once)."""
    codes = cfg.codes()
    taken: set[str] = set()
    out: list[Carried] = []
    devices = cfg.devices if cfg.devices is not None else list(device_points)
    for device in devices:
        for point in device_points.get(device, []):
            code = codes.get(point)
            if code is None or code in taken:
                continue
            taken.add(code)
            scale = multiplier(point, cfg.units.get(point)) if point in FACTORS else 1.0
            out.append(Carried(device, point, code, scale))
    return out


def carried_devices(cfg: Hj212Uplink, device_points: dict[str, list[str]]) -> frozenset[str]:
    """The devices with at least one point this uplink sends."""
    return frozenset(p.device for p in carried_points(cfg, device_points))


def samples(row: Row, points: list[Carried]) -> list[Sample]:
    """The carried points of one reading."""
    vals = json.loads(row.vals) if row.vals else {}
    flags = json.loads(row.flags) if row.flags else {}
    out = []
    for p in points:
        v = vals.get(p.point)
        value = float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None
        out.append(Sample(p, value, flags.get(p.point) == "over_range"))
    return out


def realtime_flag(sample: Sample) -> str:
    if sample.value is None:
        return "B"
    return "T" if sample.over_range else "N"


def aggregate_flag(values: int, valid: int, over: int, failed: int, expected: int) -> str:
    """The flag of one factor over one period (see the module's text)."""
    if values == 0:
        return "B" if failed else "D"
    if over:
        return "T"
    return "N" if valid >= VALID_SHARE * expected else "D"


def expected_readings(span: float, poll_interval: float) -> int:
    return max(1, round(span / poll_interval))


# the aggregate commands and their period lengths (the minute period comes from the config)
def spans(cfg_min_interval: float, hourly: bool, daily: bool) -> dict[str, float]:
    out = {MINUTE: cfg_min_interval}
    if hourly:
        out[HOUR] = 3600.0
    if daily:
        out[DAY] = 86400.0
    return out


def period_start(ts: float, span: float, tz: ZoneInfo) -> int:
    """Epoch seconds of the start of the ``span``-second period holding ``ts``, periods
    counted from local midnight (a span divides the day)."""
    local = datetime.fromtimestamp(ts, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    into = (local - midnight).total_seconds()
    return int((midnight + timedelta(seconds=math.floor(into / span) * span)).timestamp())


def local(epoch: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(epoch, tz)


def parse_data_time(text: str, tz: ZoneInfo) -> int:
    """``yyyyMMddHHmmss`` (local) as epoch seconds; ValueError when it is not one."""
    return int(datetime.strptime(text.strip()[:14], "%Y%m%d%H%M%S").replace(tzinfo=tz).timestamp())
