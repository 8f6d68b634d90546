"""Lighting schedules: when each step falls, what is in force now, and platform overrides.

Sun times come from astral for the schedule's location and time zone; a step at a sun event
that does not happen on a day (polar day or night: astral raises) is skipped for that day
with a logged warning, never a crash. Nothing here sleeps or reads the wall clock directly:
every call takes ``now`` (an aware datetime) or asks the injected ``clock``.

What is in force is per point: for each point the schedule sets, the value of the latest
step at or before ``now`` that sets it. After a restart in the middle of the night that is
``lamp_on: true`` (from sunset+10m) with ``dim_level: 50`` (from 00:30), not just the last
step's own values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from astral import Observer

from .config import Schedule, SetValue, Step, StepTime

log = logging.getLogger(__name__)
Clock = Callable[[], float]  # epoch seconds
LOOKBACK_DAYS = 3  # how far back in_force looks for the last step setting each point


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One step on one day, at its exact time."""

    schedule: str
    index: int  # position of the step in the schedule
    step: Step
    at: datetime  # aware, in the schedule's time zone

    @property
    def values(self) -> dict[str, SetValue]:
        return self.step.set


@dataclass(frozen=True, slots=True)
class Skipped:
    """A step that does not happen on a day (the sun event does not occur there)."""

    schedule: str
    index: int
    step: Step
    day: date
    reason: str


@dataclass(slots=True)
class Override:
    values: dict[str, SetValue]
    since: datetime
    until: datetime


@dataclass(slots=True)
class ScheduleEngine:
    """One configured schedule; ``timezone`` is the schedule's own or the gateway's."""

    name: str
    schedule: Schedule
    timezone: str
    clock: Clock = time.time
    overrides: dict[str, Override] = field(default_factory=dict)
    _warned: set[tuple[int, date]] = field(default_factory=set)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.schedule.timezone or self.timezone)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC).astimezone(self.tz)

    # -- when steps fall ------------------------------------------------------------------

    def step_time(self, index: int, day: date) -> datetime | Skipped:
        step = self.schedule.steps[index]
        t = step.time
        if t.event == "clock":
            return datetime(day.year, day.month, day.day, t.hour, t.minute, tzinfo=self.tz)
        try:
            base = sun_event(t, self.observer(), day, self.tz)
        except ValueError as exc:  # astral: the sun does not rise, set or reach the depression
            return Skipped(self.name, index, step, day, f"{t.event} does not occur: {exc}")
        return base + timedelta(seconds=t.offset)

    def observer(self) -> Observer:
        loc = self.schedule.location
        assert loc is not None  # the config requires a location for sun steps
        from astral import Observer  # loaded by sites whose schedules follow the sun, not by every agent

        return Observer(latitude=loc.lat, longitude=loc.lon)

    def day(self, day: date) -> tuple[list[Occurrence], list[Skipped]]:
        """The steps of one local day in time order, and the ones that do not happen that day."""
        found: list[Occurrence] = []
        skipped: list[Skipped] = []
        for i, step in enumerate(self.schedule.steps):
            at = self.step_time(i, day)
            if isinstance(at, Skipped):
                skipped.append(at)
                self._warn(at)
            else:
                found.append(Occurrence(self.name, i, step, at))
        found.sort(key=lambda o: (o.at, o.index))
        return found, skipped

    def _warn(self, s: Skipped) -> None:
        if (s.index, s.day) not in self._warned:
            self._warned.add((s.index, s.day))
            log.warning("schedule %s: step %d (%s) skipped on %s: %s", self.name, s.index + 1, s.step.at,
                        s.day.isoformat(), s.reason)

    def between(self, start: datetime, end: datetime) -> list[Occurrence]:
        """Occurrences with start < at <= end (what became due since the last look)."""
        out: list[Occurrence] = []
        d = start.astimezone(self.tz).date() - timedelta(days=1)
        while d <= end.astimezone(self.tz).date() + timedelta(days=1):
            out += [o for o in self.day(d)[0] if start < o.at <= end]
            d += timedelta(days=1)
        return sorted(out, key=lambda o: (o.at, o.index))

    def upcoming(self, days: int, now: datetime | None = None) -> tuple[list[Occurrence], list[Skipped]]:
        """The steps after ``now`` through ``days`` local days, and the skipped ones on those days."""
        now = now or self.now()
        first = now.astimezone(self.tz).date()
        steps: list[Occurrence] = []
        skipped: list[Skipped] = []
        for n in range(days):
            found, gone = self.day(first + timedelta(days=n))
            steps += [o for o in found if o.at > now]
            skipped += gone
        return steps, skipped

    def next_after(self, now: datetime) -> Occurrence | None:
        for n in range(-1, LOOKBACK_DAYS + 2):
            for o in self.day(now.astimezone(self.tz).date() + timedelta(days=n))[0]:
                if o.at > now:
                    return o
        return None

    # -- what is in force -----------------------------------------------------------------

    def in_force(self, now: datetime | None = None) -> dict[str, tuple[SetValue, Occurrence]]:
        """Point → (value, the step that set it): the latest step at or before ``now`` per point."""
        now = now or self.now()
        today = now.astimezone(self.tz).date()
        past: list[Occurrence] = []
        for n in range(LOOKBACK_DAYS, -1, -1):
            past += [o for o in self.day(today - timedelta(days=n))[0] if o.at <= now]
        past.sort(key=lambda o: (o.at, o.index))
        wanted: dict[str, tuple[SetValue, Occurrence]] = {}
        for occ in past:
            for point, value in occ.values.items():
                wanted[point] = (value, occ)
        return wanted

    def wanted(self, device: str, now: datetime | None = None) -> dict[str, SetValue]:
        """The values a device should hold now: the schedule's, with a live override on top."""
        now = now or self.now()
        values = {p: v for p, (v, _) in self.in_force(now).items()}
        override = self.active_override(device, now)
        if override is not None:
            values.update(override.values)
        return values

    # -- overrides ------------------------------------------------------------------------

    def override(self, device: str, values: dict[str, SetValue], now: datetime | None = None,
                 duration: float | None = None) -> Override:
        """A platform command holds ``values`` on ``device`` until the next step, or for ``duration`` s."""
        now = now or self.now()
        if duration is not None:
            until = now + timedelta(seconds=duration)
        else:
            nxt = self.next_after(now)
            until = nxt.at if nxt is not None else now + timedelta(days=1)
        ov = Override(dict(values), now, until)
        self.overrides[device] = ov
        return ov

    def active_override(self, device: str, now: datetime) -> Override | None:
        ov = self.overrides.get(device)
        if ov is not None and now >= ov.until:
            del self.overrides[device]
            log.info("schedule %s: override of %s ended at %s", self.name, device, ov.until.isoformat())
            return None
        return ov


def sun_event(t: StepTime, observer: Observer, day: date, tz: ZoneInfo) -> datetime:
    """The sun event of ``t`` on the local ``day`` (raises ValueError when it does not occur)."""
    from astral import sun  # loaded by sites whose schedules follow the sun, not by every agent

    if t.event == "dawn":
        return sun.dawn(observer, date=day, tzinfo=tz)
    if t.event == "dusk":
        return sun.dusk(observer, date=day, tzinfo=tz)
    if t.event == "sunrise":
        return sun.sunrise(observer, date=day, tzinfo=tz)
    return sun.sunset(observer, date=day, tzinfo=tz)


def engines(schedules: dict[str, Schedule], gateway_tz: str, clock: Clock = time.time) -> dict[str, ScheduleEngine]:
    return {name: ScheduleEngine(name, s, gateway_tz, clock) for name, s in schedules.items()}
