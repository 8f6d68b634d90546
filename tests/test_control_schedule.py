"""Lighting schedules on a fake clock: sun-based steps against astral's own sun times, the
state in force after a restart, overrides, and polar days and nights."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from astral import Observer, sun

from agent.control.config import Schedule
from agent.control.schedule import ScheduleEngine

SHANGHAI = ZoneInfo("Asia/Shanghai")
SJZ = Observer(latitude=38.04, longitude=114.51)  # Shijiazhuang
STEPS: list[dict[str, object]] = [{"at": "sunset+10m", "set": {"lamp_on": True, "dim_level": 100}},
         {"at": "00:30", "set": {"dim_level": 50}},
         {"at": "sunrise-10m", "set": {"lamp_on": False}}]


def engine(at: datetime, lat: float = 38.04, lon: float = 114.51, tz: str = "Asia/Shanghai",
           steps: list[dict[str, object]] | None = None) -> ScheduleEngine:
    sched = Schedule.model_validate({"devices": ["lamp-1"], "location": {"lat": lat, "lon": lon},
                                     "steps": steps or STEPS})
    clock = FakeClock(at)
    return ScheduleEngine("street-lights", sched, tz, clock)


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def local(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def test_sun_steps_fall_at_astrals_sun_times_for_the_place() -> None:
    e = engine(local(2026, 6, 21, 12))
    steps, skipped = e.upcoming(days=2)
    assert not skipped
    sunset_21 = sun.sunset(SJZ, date=date(2026, 6, 21), tzinfo=SHANGHAI)
    sunrise_22 = sun.sunrise(SJZ, date=date(2026, 6, 22), tzinfo=SHANGHAI)
    assert [(o.step.at, o.at) for o in steps[:3]] == [
        ("sunset+10m", sunset_21 + timedelta(minutes=10)),
        ("00:30", local(2026, 6, 22, 0, 30)),
        ("sunrise-10m", sunrise_22 - timedelta(minutes=10)),
    ]
    # midsummer in Shijiazhuang: sunset near 19:45, sunrise near 04:50 local time
    assert 19 <= steps[0].at.hour <= 20 and steps[2].at.hour == 4
    assert [o.at.date() for o in steps] == [date(2026, 6, 21), date(2026, 6, 22), date(2026, 6, 22), date(2026, 6, 22)]
    assert e.now() == local(2026, 6, 21, 12)


def test_winter_steps_move_with_the_sun() -> None:
    steps, _ = engine(local(2026, 12, 21, 12)).upcoming(days=1)
    assert steps[0].at == sun.sunset(SJZ, date=date(2026, 12, 21), tzinfo=SHANGHAI) + timedelta(minutes=10)
    assert steps[0].at.hour == 17


@pytest.mark.parametrize(("at", "wanted"), [
    (local(2026, 6, 22, 2), {"lamp_on": True, "dim_level": 50}),     # restart in the middle of the night
    (local(2026, 6, 21, 23), {"lamp_on": True, "dim_level": 100}),   # evening, before 00:30
    (local(2026, 6, 22, 12), {"lamp_on": False, "dim_level": 50}),   # day: the relay is off
])
def test_restart_applies_the_step_in_force(at: datetime, wanted: dict[str, object]) -> None:
    e = engine(at)
    assert e.wanted("lamp-1") == wanted
    in_force = e.in_force()
    assert in_force["lamp_on"][1].step.at == ("sunrise-10m" if at.hour == 12 else "sunset+10m")


def test_due_steps_between_two_looks() -> None:
    e = engine(local(2026, 6, 22, 2))
    due = e.between(local(2026, 6, 21, 18), local(2026, 6, 22, 2))
    assert [o.step.at for o in due] == ["sunset+10m", "00:30"]


def test_override_ends_at_the_next_step() -> None:
    e = engine(local(2026, 6, 21, 21))
    ov = e.override("lamp-1", {"dim_level": 30}, local(2026, 6, 21, 21))
    assert ov.until == local(2026, 6, 22, 0, 30)
    assert e.wanted("lamp-1", local(2026, 6, 22, 0, 29)) == {"lamp_on": True, "dim_level": 30}
    assert e.wanted("lamp-2", local(2026, 6, 22, 0, 29)) == {"lamp_on": True, "dim_level": 100}
    assert e.wanted("lamp-1", local(2026, 6, 22, 0, 30)) == {"lamp_on": True, "dim_level": 50}
    assert "lamp-1" not in e.overrides


def test_override_for_a_duration_spans_a_step() -> None:
    e = engine(local(2026, 6, 22, 0))
    e.override("lamp-1", {"dim_level": 80}, local(2026, 6, 22, 0), duration=3600)
    assert e.wanted("lamp-1", local(2026, 6, 22, 0, 45))["dim_level"] == 80
    assert e.wanted("lamp-1", local(2026, 6, 22, 1, 0))["dim_level"] == 50


LONGYEARBYEN = ZoneInfo("Arctic/Longyearbyen")


def test_polar_day_skips_the_sun_steps_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    at = datetime(2026, 6, 21, 12, tzinfo=LONGYEARBYEN)
    e = engine(at, lat=78.22, lon=15.65, tz="Arctic/Longyearbyen")
    with caplog.at_level(logging.WARNING, logger="agent.control.schedule"):
        steps, skipped = e.upcoming(days=2)
        e.upcoming(days=2)
    assert [o.step.at for o in steps] == ["00:30"]  # only the clock step happens
    assert [(s.step.at, s.day) for s in skipped] == [
        ("sunset+10m", date(2026, 6, 21)), ("sunrise-10m", date(2026, 6, 21)),
        ("sunset+10m", date(2026, 6, 22)), ("sunrise-10m", date(2026, 6, 22))]
    assert "always above the horizon" in skipped[0].reason
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 4  # once per step and day, not on every look
    assert "schedule street-lights: step 1 (sunset+10m) skipped on 2026-06-21" in warnings[0]
    assert e.wanted("lamp-1") == {"dim_level": 50}  # no crash; the clock step still holds


def test_polar_night_keeps_the_last_value_and_the_clock_steps() -> None:
    at = datetime(2026, 12, 21, 12, tzinfo=LONGYEARBYEN)
    e = engine(at, lat=78.22, lon=15.65, tz="Arctic/Longyearbyen",
               steps=[*STEPS, {"at": "16:00", "set": {"lamp_on": True}}])
    steps, skipped = e.upcoming(days=1)
    assert [o.step.at for o in steps] == ["16:00"]
    assert {s.step.at for s in skipped} == {"sunset+10m", "sunrise-10m"}
    assert "never" in skipped[0].reason or "below" in skipped[0].reason
    assert e.wanted("lamp-1", datetime(2026, 12, 21, 17, tzinfo=LONGYEARBYEN)) == {"lamp_on": True, "dim_level": 50}
