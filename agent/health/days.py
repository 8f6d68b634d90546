"""Local days in the gateway's time zone, and the readings a platform expects in one.

How many readings a platform expects of a device on a local day (``gateway.timezone``):

- The day is ``[00:00, next 00:00)`` local time: 86400 s, or 82800/90000 s on a
  daylight-saving change (Asia/Shanghai has none).
- Counting starts at the device's first polled reading ever (a device added at 10:00:05
  is expected from 10:00:05, not from midnight); on later days from midnight.
- From there one reading per ``interval`` (the device's interval in the config now) is
  expected until the day ends, or until *now* for today: ``ceil(span / interval)``: a poll
  at the start of each interval. An agent that runs all day misses none; time the agent
  was stopped (or the Pi off) still counts as expected, as the platform sees it: the
  readings it did not get are missing.
- A device that answers nothing still yields a reading per interval (``offline``,
  ``timeout``, ...): it counts as received but not valid.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


class LocalDays:
    """Epoch milliseconds → local day, cached for the current day (the writer's hot path)."""

    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone
        self._start = self._end = 0
        self._day = ""

    def day_of(self, ts_ms: int) -> str:
        if not self._start <= ts_ms < self._end:
            day = datetime.fromtimestamp(ts_ms / 1000, self.tz).date()
            self._start, self._end = self.bounds(day)
            self._day = day.isoformat()
        return self._day

    def bounds(self, day: date) -> tuple[int, int]:
        """``[start, end)`` of a local day in epoch milliseconds."""
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        nxt = day + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def today(self, now_ms: int) -> date:
        return datetime.fromtimestamp(now_ms / 1000, self.tz).date()


def expected_readings(interval_s: float, day_start_ms: int, day_end_ms: int, since_ms: int | None,
                      now_ms: int) -> int:
    """Readings expected in ``[max(day_start, since), min(day_end, now))``: one per interval.

    ``since_ms`` is the device's first reading ever (None: it has none yet, nothing is expected).
    """
    if since_ms is None:
        return 0
    begin = max(day_start_ms, since_ms)
    end = min(day_end_ms, now_ms)
    if end <= begin:
        return 0
    return math.ceil((end - begin) / (interval_s * 1000) - 1e-9)
