"""Readings stamped while the clock was not known good: held back, then given UTC times.

Such a reading has ``clock`` set to the id of the boot it was taken in and ``ts`` in
milliseconds since that boot. Uplinks do not fetch it (``clock IS NULL`` in every fetch).
When the clock is good again, :func:`release_held` turns the stamps into UTC in one
transaction, and they go out like any other reading.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

log = logging.getLogger("buffer.outbox")


@dataclass(frozen=True, slots=True)
class ClockFix:
    boot_id: str
    offset_ms: int  # UTC ms = boot ms + offset for readings of this boot
    boot_start_ms: int  # UTC ms when this boot began
    floor_ms: int  # no released stamp earlier than this


def held_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM readings WHERE clock IS NOT NULL").fetchone()[0])


def release_held(conn: sqlite3.Connection, fix: ClockFix) -> tuple[int, int]:
    """Give every held reading its UTC time. Returns (of this boot, of earlier boots)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        earlier = conn.execute("SELECT clock, max(ts), count(*) FROM readings WHERE clock IS NOT NULL"
                               " AND clock != ? GROUP BY clock", (fix.boot_id,)).fetchall()
        this_boot = conn.execute("UPDATE readings SET ts = max(ts + ?, ?), clock = NULL WHERE clock = ?",
                                 (fix.offset_ms, fix.floor_ms, fix.boot_id)).rowcount
        for boot, last, _n in earlier:
            # an earlier boot that never had a good clock: its readings end just before this boot began
            conn.execute("UPDATE readings SET ts = max(? - (? - ts) - 1, ?), clock = NULL WHERE clock = ?",
                         (fix.boot_start_ms, last, fix.floor_ms, boot))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    others = sum(n for _b, _l, n in earlier)
    if this_boot:
        log.info("buffer: %d readings held for a good clock now have their UTC time and go out", this_boot)
    if others:
        log.warning("buffer: %d readings from %d earlier boot(s) that never had a good clock: their times are"
                    " estimated as ending when this boot began", others, len(earlier))
    return this_boot, others
