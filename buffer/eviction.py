"""Evicting the oldest readings when the store is full, and recording exactly what each
uplink lost, so that it can announce the ranges on its status topic."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from .ranges import merge_closest

EVICT_FRACTION = 0.05
EVICT_MIN_ROWS = 100
MAX_RANGES_PER_UPLINK = 64  # an announcement stays small; ranges are joined across the smallest gaps
MAX_PENDING_PER_UPLINK = 256  # unannounced records per uplink, at most
EVICTION_HISTORY = 200  # announced eviction records kept for `edge-agent buffer stats`


@dataclass(frozen=True, slots=True)
class Evicted:
    count: int
    first_seq: int
    last_seq: int
    records: int  # rows written to the evictions table (one per uplink and range)


def chunk_size(conn: sqlite3.Connection) -> int:
    """How many readings one eviction removes: a fraction of the store, at least a few hundred."""
    lo, hi = conn.execute("SELECT min(seq), max(seq) FROM readings").fetchone()
    if lo is None:
        return 0
    return max(EVICT_MIN_ROWS, int((hi - lo + 1) * EVICT_FRACTION))


def pending_ranges(rows: list[tuple[int, int]], bit: int) -> list[tuple[int, int, int]]:
    """``(first, last, count)`` runs of consecutive seqs pending for ``bit`` among ``rows``
    (``(seq, pending)`` in seq order). A seq missing from the table, or present but already
    delivered to this uplink, ends a run: the announced ranges hold exactly what was lost."""
    mask = 1 << bit
    runs: list[tuple[int, int]] = []
    first = last = -1
    for seq, pending in rows:
        if not pending & mask:
            continue
        if last >= 0 and seq == last + 1:
            last = seq
            continue
        if last >= 0:
            runs.append((first, last))
        first = last = seq
    if last >= 0:
        runs.append((first, last))
    counts = {r: r[1] - r[0] + 1 for r in runs}
    merged = merge_closest(runs, MAX_RANGES_PER_UPLINK)
    out = []
    for a, b in merged:
        out.append((a, b, sum(n for (x, y), n in counts.items() if a <= x and y <= b)))
    return out


def evict_oldest(conn: sqlite3.Connection, bits: dict[str, int], reason: str, rows: int | None = None,
                 counter_extra: dict[str, int] | None = None) -> Evicted | None:
    """Delete the oldest ``rows`` readings in one transaction and record, per uplink, the
    seq ranges it had not yet received. None when the store is empty."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = rows if rows is not None else chunk_size(conn)
        picked: list[tuple[int, int]] = conn.execute(
            "SELECT seq, pending FROM readings ORDER BY seq LIMIT ?", (max(n, 1),)).fetchall()
        if not picked:
            conn.execute("ROLLBACK")
            return None
        first, last = picked[0][0], picked[-1][0]
        conn.execute("DELETE FROM readings WHERE seq <= ?", (last,))
        at = int(time.time() * 1000)
        records = 0
        for name, bit in bits.items():
            for a, b, count in pending_ranges(picked, bit):
                records += _record(conn, at, a, b, count, reason, bit, name)
            records += _bound_pending(conn, at, bit, name)
        # announced history is kept short: the store is for readings
        conn.execute("DELETE FROM evictions WHERE pending = 0 AND id <= (SELECT id FROM evictions WHERE pending = 0"
                     " ORDER BY id DESC LIMIT 1 OFFSET ?)", (EVICTION_HISTORY,))
        for key, value in {"evicted": len(picked), **(counter_extra or {})}.items():
            conn.execute("INSERT INTO counters(name, value) VALUES (?, ?)"
                         " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (key, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return Evicted(len(picked), first, last, records)


def _record(conn: sqlite3.Connection, at: int, first: int, last: int, count: int, reason: str, bit: int,
            name: str) -> int:
    """Insert one range lost by uplink ``name``. While the uplink is down, consecutive evictions
    are adjacent: such a range is merged with the uplink's newest unannounced one, so an
    outage of any length leaves one record. The merged record gets a new id, so an
    announcement of the old one that is in flight acknowledges nothing new."""
    prev = conn.execute("SELECT id, first_seq, count FROM evictions WHERE uplink = ? AND pending = ?"
                        " AND last_seq = ? AND reason = ? ORDER BY id DESC LIMIT 1",
                        (name, 1 << bit, first - 1, reason)).fetchone()
    if prev is not None:
        conn.execute("DELETE FROM evictions WHERE id = ?", (prev[0],))
        first, count = prev[1], prev[2] + count
    conn.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending, uplink)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)", (at, first, last, count, reason, 1 << bit, name))
    return 1


def _bound_pending(conn: sqlite3.Connection, at: int, bit: int, name: str) -> int:
    """An uplink that delivers some readings but never announces (pathological) must not grow
    the table without end: its oldest unannounced ranges are joined into one. Still exact
    for the platform: what lies between them was delivered to it or is in another range."""
    rows = conn.execute("SELECT id, first_seq, last_seq, count, reason FROM evictions WHERE uplink = ?"
                        " AND pending = ? ORDER BY id", (name, 1 << bit)).fetchall()
    if len(rows) <= MAX_PENDING_PER_UPLINK:
        return 0
    old = rows[: len(rows) - MAX_PENDING_PER_UPLINK // 2]
    conn.executemany("DELETE FROM evictions WHERE id = ?", [(r[0],) for r in old])
    reasons = ", ".join(dict.fromkeys(r[4] for r in old))
    conn.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending, uplink)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)", (at, min(r[1] for r in old), max(r[2] for r in old),
                                                  sum(r[3] for r in old), reasons, 1 << bit, name))
    return 1


def record_loss(conn: sqlite3.Connection, bits: dict[str, int], first: int, last: int, count: int,
                reason: str) -> int:
    """Record a range every uplink lost without an eviction (a corrupt file moved aside)."""
    if last < first:
        return 0
    at = int(time.time() * 1000)
    conn.execute("BEGIN IMMEDIATE")
    for name, bit in bits.items():
        conn.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending, uplink)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)", (at, first, last, count, reason, 1 << bit, name))
    conn.execute("COMMIT")
    return len(bits)
