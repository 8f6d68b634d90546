"""The HJ 212 uplink's own SQLite file (``data_dir/hj212-<uplink>.db``): open aggregates,
the minute/hour/day packets made from them, and the settings a platform changed.

Readings leave the outbox for this uplink only after they are folded in here (the highest
seq folded is committed with them, so a crash between the two never counts a reading
twice). A packet stays ``answered = 0`` until the platform's 9014 names it, and stays for
history pulls ``keep_days`` after its period.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buffer.database import connect

from .aggregate import Sample, aggregate_flag, expected_readings

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS polls(cn TEXT, start INTEGER, span REAL, device TEXT, readings INTEGER,
    PRIMARY KEY(cn, start, device));
CREATE TABLE IF NOT EXISTS acc(cn TEXT, start INTEGER, code TEXT, device TEXT, scale REAL,
    n_values INTEGER, n_valid INTEGER, n_over INTEGER, n_failed INTEGER, lo REAL, hi REAL, total REAL,
    PRIMARY KEY(cn, start, code));
CREATE TABLE IF NOT EXISTS packets(id INTEGER PRIMARY KEY AUTOINCREMENT, cn TEXT NOT NULL,
    start INTEGER NOT NULL, vals TEXT NOT NULL, answered INTEGER NOT NULL DEFAULT 0, UNIQUE(cn, start));
CREATE INDEX IF NOT EXISTS packets_pending ON packets(answered, start);
"""

Stats = tuple[float, float, float, str] | tuple[None, None, None, str]


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    cn: str
    start: int  # epoch seconds of the period's start (its DataTime)
    values: dict[str, Stats]


class Hj212Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # -- settings ---------------------------------------------------------------------
    def meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def folded_seq(self) -> int:
        return int(self.meta("folded_seq") or 0)

    # -- folding readings in --------------------------------------------------------------
    def fold(self, last_seq: int, readings: Iterable[tuple[str, list[Sample], dict[str, int]]],
             spans: dict[str, float]) -> int:
        """One transaction: each reading ``(device, samples, {cn: period start})`` added to
        its open periods; readings of a period already closed are left out (counted).
        Returns how many period entries were late."""
        c = self.conn
        closed = {cn: int(self.meta(f"closed:{cn}") or 0) for cn in spans}
        late = 0
        c.execute("BEGIN IMMEDIATE")
        try:
            for device, reading, starts in readings:
                for cn, start in starts.items():
                    if start < closed[cn]:
                        late += 1
                        continue
                    c.execute("INSERT INTO polls(cn, start, span, device, readings) VALUES (?, ?, ?, ?, 1)"
                              " ON CONFLICT(cn, start, device) DO UPDATE SET readings = readings + 1",
                              (cn, start, spans[cn], device))
                    c.executemany(
                        "INSERT INTO acc VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT(cn, start, code) DO UPDATE SET n_values = n_values + excluded.n_values,"
                        " n_valid = n_valid + excluded.n_valid, n_over = n_over + excluded.n_over,"
                        " n_failed = n_failed + excluded.n_failed,"
                        " lo = coalesce(min(lo, excluded.lo), lo, excluded.lo),"
                        " hi = coalesce(max(hi, excluded.hi), hi, excluded.hi), total = total + excluded.total",
                        [_acc_row(cn, start, s) for s in reading])
            self.set_meta("folded_seq", last_seq)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return late

    # -- closing periods -------------------------------------------------------------------
    def close_due(self, now: float, grace: float, intervals: dict[str, float]) -> list[Stored]:
        """Every open period that ended ``grace`` seconds before ``now`` becomes a packet."""
        c = self.conn
        due = c.execute("SELECT DISTINCT cn, start, span FROM polls WHERE start + span + ? <= ? ORDER BY start, cn",
                        (grace, now)).fetchall()
        made: list[Stored] = []
        for cn, start, span in due:
            c.execute("BEGIN IMMEDIATE")
            try:
                values = self._period_values(cn, start, span, intervals)
                cur = c.execute("INSERT OR IGNORE INTO packets(cn, start, vals) VALUES (?, ?, ?)",
                                (cn, start, json.dumps(values)))
                c.execute("DELETE FROM acc WHERE cn = ? AND start = ?", (cn, start))
                c.execute("DELETE FROM polls WHERE cn = ? AND start = ?", (cn, start))
                self.set_meta(f"closed:{cn}", max(int(start + span), int(self.meta(f"closed:{cn}") or 0)))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            if cur.rowcount:
                made.append(Stored(int(cur.lastrowid or 0), cn, start, values))
        return made

    def _period_values(self, cn: str, start: int, span: float, intervals: dict[str, float]) -> dict[str, Stats]:
        values: dict[str, Stats] = {}
        for code, device, scale, n_values, n_valid, n_over, n_failed, lo, hi, total in self.conn.execute(
                "SELECT code, device, scale, n_values, n_valid, n_over, n_failed, lo, hi, total FROM acc"
                " WHERE cn = ? AND start = ? ORDER BY rowid", (cn, start)):
            expected = expected_readings(span, intervals.get(device, span))
            flag = aggregate_flag(n_values, n_valid, n_over, n_failed, max(expected, 1))
            if n_values:
                values[code] = (round(lo * scale, 6), round(total / n_values * scale, 3), round(hi * scale, 6), flag)
            else:
                values[code] = (None, None, None, flag)
        return values

    # -- packets ----------------------------------------------------------------------------
    def unanswered(self, limit: int, skip: Iterable[int] = ()) -> list[Stored]:
        """Packets waiting for an answer, oldest period first."""
        skip = set(skip)
        rows = self.conn.execute("SELECT id, cn, start, vals FROM packets WHERE answered = 0"
                                 " ORDER BY start, id LIMIT ?", (limit + len(skip),)).fetchall()
        return [_stored(r) for r in rows if r[0] not in skip][:limit]

    def count_unanswered(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM packets WHERE answered = 0").fetchone()[0])

    def answered(self, ids: list[int]) -> None:
        if ids:
            self.conn.executemany("UPDATE packets SET answered = 1 WHERE id = ?", [(i,) for i in ids])

    def history(self, cn: str, begin: int, end: int) -> list[Stored]:
        """Packets of command ``cn`` whose period starts within ``begin..end``."""
        rows = self.conn.execute("SELECT id, cn, start, vals FROM packets WHERE cn = ? AND start BETWEEN ? AND ?"
                                 " ORDER BY start", (cn, begin, end)).fetchall()
        return [_stored(r) for r in rows]

    def prune(self, before: int) -> int:
        """Drop packets of periods before ``before``; returns how many were never answered."""
        lost = int(self.conn.execute("SELECT count(*) FROM packets WHERE start < ? AND answered = 0",
                                     (before,)).fetchone()[0])
        self.conn.execute("DELETE FROM packets WHERE start < ?", (before,))
        return lost


def _acc_row(cn: str, start: int, s: Sample) -> tuple[Any, ...]:
    has = s.value is not None
    return (cn, start, s.point.code, s.point.device, s.point.scale, int(has), int(has and not s.over_range),
            int(has and s.over_range), int(not has), s.value, s.value, s.value if has else 0.0)


def _stored(row: tuple[Any, ...]) -> Stored:
    values = {code: tuple(v) for code, v in json.loads(row[3]).items()}
    return Stored(int(row[0]), str(row[1]), int(row[2]), values)
