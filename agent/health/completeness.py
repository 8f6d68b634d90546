"""A day's completeness per device, as a platform counts it (see :mod:`agent.health.days`).

- **transmission rate** = readings received ÷ readings expected: every reading counts,
  a failed poll's too (it carries its failure as ``status``).
- **effective transmission rate** = valid readings (status ``ok``) ÷ readings expected
  (= transmission rate × validity, valid ÷ received, as the monitoring rules define it).

Both are computed for what the gateway polled (``received``/``valid``) and for what each
uplink delivered: the latter is what that platform sees. An MQTT uplink delivers a reading
with its success acknowledgement (PUBACK); an HJ 212 uplink when the platform answers the
minute packet the reading went into. A rate is capped at 1 (a restart in the middle of an
interval can add a poll), rounded down to 4 decimals (1.0 only when nothing is missing)
and null while nothing is expected.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from datetime import date
from typing import Any

from buffer.completeness import POLLED, Counts, first_days, read_day

from .days import LocalDays, expected_readings


def rate(part: int, expected: int) -> float | None:
    """``part / expected`` rounded down to 4 decimals: 1.0 only when nothing is missing."""
    if expected <= 0:
        return None
    return math.floor(min(1.0, part / expected) * 10_000) / 10_000


Carriage = Mapping[str, Collection[str] | None]  # uplink → the devices it reports (None: every one)


def _device_day(device: str, counts: Mapping[str, Counts], expected: int | None, uplinks: Carriage,
                interval: float | None) -> dict[str, Any]:
    polled = counts.get(POLLED, Counts())
    delivered = {up: counts.get(up, Counts()) for up, carried in uplinks.items()
                 if carried is None or device in carried}
    delivered.update({up: c for up, c in counts.items() if up != POLLED and up not in delivered})
    exp = expected if expected is not None else 0
    return {
        "interval": interval,
        "expected": expected,
        "received": polled.readings,
        "valid": polled.valid,
        "transmission_rate": rate(polled.readings, exp),
        "effective_rate": rate(polled.valid, exp),
        "delivered": {up: c.readings for up, c in delivered.items()},
        "delivered_valid": {up: c.valid for up, c in delivered.items()},
        "uplinks": {up: {"transmission_rate": rate(c.readings, exp), "effective_rate": rate(c.valid, exp)}
                    for up, c in delivered.items()},
    }


def day_report(conn: sqlite3.Connection, days: LocalDays, day: date, intervals: Mapping[str, float],
               uplinks: Carriage | Iterable[str], now_ms: int) -> dict[str, Any]:
    """One local day's counts and rates per device: the configured devices (``intervals``:
    device → poll interval in seconds) and any other device with counts that day. A device
    shows the uplinks that report it (``uplinks``: name → its devices, None for every device;
    a plain list of names: every uplink reports every device) and any uplink with counts."""
    start, end = days.bounds(day)
    key = day.isoformat()
    counts = read_day(conn, key)
    first = first_days(conn)
    carriage: Carriage = uplinks if isinstance(uplinks, Mapping) else dict.fromkeys(uplinks)
    devices: dict[str, Any] = {}
    for device in [*intervals, *sorted(d for d in counts if d not in intervals)]:
        interval = intervals.get(device)
        dev_counts = counts.get(device, {})
        expected: int | None = None
        if interval is not None:
            first_day = first.get(device)
            since: int | None = None
            if first_day is not None and first_day < key:
                since = start
            elif first_day == key:
                since = dev_counts[POLLED].first_ts if POLLED in dev_counts else None
            expected = expected_readings(interval, start, end, since, now_ms)
        devices[device] = _device_day(device, dev_counts, expected, carriage, interval)
    return {"day": key, "timezone": days.timezone, "at": now_ms, "final": now_ms >= end, "devices": devices}


def has_counts_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='daily'").fetchone() is not None
