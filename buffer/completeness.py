"""Completeness counts: per device per local day, the readings polled and those each uplink
delivered, with how many of them were valid (status ``ok``).

They live in the outbox file's ``daily`` table, apart from the readings: a delivered reading
leaves ``readings``, its count stays here. The outbox writer updates them in the same
transaction as the readings or acknowledgements they count, so counting costs no commit and
no fsync of its own, and a count never disagrees with the buffer (a crash keeps both or
neither). A reading counts for the local day of its ``ts``; a delivery counts once per
reading and uplink (the first success acknowledgement clears the uplink's bit; a duplicate
sent again after a lost PUBACK finds it clear and is not counted twice).

An uplink may count its deliveries itself instead (:func:`add_delivered`; HJ 212: when the
platform answers a minute packet). Its own store marks the packet answered first, so a crash
before the count is committed can leave that packet uncounted, never counted twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .reader import ALARM_STATUS

POLLED = ""  # the ``uplink`` column of the polled counts
VALID_STATUS = "ok"

DayOf = Callable[[int], str]  # epoch ms → local day "YYYY-MM-DD"

_UPSERT = (
    "INSERT INTO daily(day, device, uplink, readings, valid, first_ts) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(day, device, uplink) DO UPDATE SET readings = readings + excluded.readings,"
    " valid = valid + excluded.valid, first_ts = min(first_ts, excluded.first_ts)"
)


@dataclass(slots=True)
class Counts:
    readings: int = 0
    valid: int = 0
    first_ts: int | None = None  # the earliest reading of the day (polled counts)


def add_counts(conn: sqlite3.Connection, uplink: str, rows: Iterable[tuple[str, int, str]], day_of: DayOf) -> None:
    """Count ``(device, ts, status)`` rows for ``uplink`` (:data:`POLLED` for the polled ones),
    inside the caller's transaction. Alarm events share the outbox but are no readings: skipped."""
    counts: dict[tuple[str, str], Counts] = {}
    for device, ts, status in rows:
        if status == ALARM_STATUS:
            continue
        key = (day_of(ts), device)
        c = counts.get(key)
        if c is None:
            c = counts[key] = Counts(first_ts=ts)
        c.readings += 1
        c.valid += status == VALID_STATUS
        if c.first_ts is None or ts < c.first_ts:
            c.first_ts = ts
    if counts:
        conn.executemany(_UPSERT, [(day, device, uplink, c.readings, c.valid, c.first_ts)
                                   for (day, device), c in counts.items()])


def add_delivered(conn: sqlite3.Connection, uplink: str, rows: Iterable[tuple[str, int, int, int]],
                  day_of: DayOf) -> None:
    """Deliveries ``uplink`` counted itself: ``(device, ts, readings, valid)`` rows, each for
    the local day of its ``ts`` (inside the caller's transaction)."""
    conn.executemany(_UPSERT, [(day_of(ts), device, uplink, readings, valid, ts)
                               for device, ts, readings, valid in rows if readings])


def apply_acks(conn: sqlite3.Connection, bit: int, spans: Iterable[tuple[int, int]], uplink: str | None,
               day_of: DayOf | None) -> None:
    """An uplink's success acknowledgements for the seq ``spans``: readings nobody else waits
    for go at once, the rest lose the uplink's ``bit``. With ``uplink`` and ``day_of``, each
    reading whose bit this clears counts as delivered by that uplink (RETURNING the rows: a
    reading acknowledged twice is counted once)."""
    others = ~(1 << bit)
    if uplink is None or day_of is None:
        conn.executemany("DELETE FROM readings WHERE seq BETWEEN ? AND ? AND (pending & ?) = 0",
                         [(a, b, others) for a, b in spans])
        conn.executemany("UPDATE readings SET pending = pending & ? WHERE seq BETWEEN ? AND ? AND pending & ?",
                         [(others, a, b, 1 << bit) for a, b in spans])
        return
    delivered: list[tuple[str, int, str]] = []
    for a, b in spans:
        rows = conn.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ? AND (pending & ?) = 0"
                            " RETURNING device, ts, status, pending", (a, b, others)).fetchall()
        delivered += [(d, ts, st) for d, ts, st, pending in rows if pending & (1 << bit)]
        delivered += conn.execute("UPDATE readings SET pending = pending & ? WHERE seq BETWEEN ? AND ?"
                                  " AND pending & ? RETURNING device, ts, status", (others, a, b, 1 << bit)).fetchall()
    add_counts(conn, uplink, delivered, day_of)


def read_day(conn: sqlite3.Connection, day: str) -> dict[str, dict[str, Counts]]:
    """device → uplink (:data:`POLLED` for polled) → counts of one local day."""
    out: dict[str, dict[str, Counts]] = {}
    for device, uplink, readings, valid, first_ts in conn.execute(
            "SELECT device, uplink, readings, valid, first_ts FROM daily WHERE day = ?", (day,)):
        out.setdefault(device, {})[uplink] = Counts(readings, valid, first_ts)
    return out


def first_days(conn: sqlite3.Connection) -> dict[str, str]:
    """device → the first local day it has polled readings on."""
    return dict(conn.execute("SELECT device, min(day) FROM daily WHERE uplink = ? GROUP BY device", (POLLED,)))


def days(conn: sqlite3.Connection) -> list[str]:
    """Every local day with counts, oldest first."""
    return [d for (d,) in conn.execute("SELECT DISTINCT day FROM daily ORDER BY day")]
