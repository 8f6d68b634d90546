"""Readings stamped while the clock was not known good: held back, then given UTC times.

Such a reading's ``ts`` is stored as ``-(ms since its boot) - 1``: negative, so no uplink
fetches it (every fetch asks for ``ts >= 0``), and it costs no extra byte per row. The
seq range of each boot's held readings is kept in ``meta`` (``held:<boot id>`` →
``first,last``). When the clock is good again, :func:`release_held` turns the stamps into
UTC in one transaction, and they go out like any other reading.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.reading import Reading

from .completeness import POLLED, DayOf, add_counts

log = logging.getLogger("buffer.outbox")

HELD_PREFIX = "held:"


@dataclass(frozen=True, slots=True)
class ClockFix:
    boot_id: str
    offset_ms: int  # UTC ms = boot ms + offset for readings of this boot
    boot_start_ms: int  # UTC ms when this boot began
    floor_ms: int  # no released stamp earlier than this


def stored_ts(reading: Reading) -> int:
    return reading.ts if reading.clock is None else -reading.ts - 1


def note_held(conn: sqlite3.Connection, first_seq: int, batch: Sequence[Reading]) -> None:
    """Inside the insert's transaction: widen each boot's held seq range by this batch's held readings."""
    spans: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(batch):
        if r.clock is not None:
            lo, _hi = spans.get(r.clock, (first_seq + i, 0))
            spans[r.clock] = (lo, first_seq + i)
    for boot, (lo, hi) in spans.items():
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (HELD_PREFIX + boot,)).fetchone()
        if row is not None:
            old_lo, old_hi = (int(x) for x in row[0].split(","))
            lo, hi = min(lo, old_lo), max(hi, old_hi)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (HELD_PREFIX + boot, f"{lo},{hi}"))


def held_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM readings WHERE ts < 0").fetchone()[0])


def release_held(conn: sqlite3.Connection, fix: ClockFix, day_of: DayOf | None = None) -> tuple[int, int]:
    """Give every held reading its UTC time. Returns (of this boot, of earlier boots).
    With ``day_of``, the released readings are counted as polled on their local day now
    (held, they had no day: their boot-clock stamp would have counted them in 1970)."""
    this_boot = earlier = boots = 0
    released: list[tuple[str, int, str]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        held = conn.execute("SELECT key, value FROM meta WHERE key LIKE ?", (HELD_PREFIX + "%",)).fetchall()
        for key, span in held:
            lo, hi = (int(x) for x in span.split(","))
            if key == HELD_PREFIX + fix.boot_id:  # boot ms = -ts - 1
                rows = conn.execute("UPDATE readings SET ts = max(-ts - 1 + ?, ?) WHERE seq BETWEEN ? AND ?"
                                    " AND ts < 0 RETURNING device, ts, status",
                                    (fix.offset_ms, fix.floor_ms, lo, hi)).fetchall()
                this_boot += len(rows)
                released += rows
            else:  # a boot that never had a good clock: its readings end just before this boot began
                last = conn.execute("SELECT max(-ts - 1) FROM readings WHERE seq BETWEEN ? AND ? AND ts < 0",
                                    (lo, hi)).fetchone()[0]
                if last is not None:
                    rows = conn.execute(
                        "UPDATE readings SET ts = max(? - (? - (-ts - 1)) - 1, ?) WHERE seq BETWEEN ? AND ?"
                        " AND ts < 0 RETURNING device, ts, status",
                        (fix.boot_start_ms, last, fix.floor_ms, lo, hi)).fetchall()
                    earlier += len(rows)
                    released += rows
                    boots += 1
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        if day_of is not None:
            add_counts(conn, POLLED, released, day_of)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if this_boot:
        log.info("buffer: %d readings held for a good clock now have their UTC time and go out", this_boot)
    if earlier:
        log.warning("buffer: %d readings from %d earlier boot(s) that never had a good clock: their times are"
                    " estimated as ending when this boot began", earlier, boots)
    return this_boot, earlier
