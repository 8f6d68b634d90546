"""The HJ 212 uplink's own SQLite file (``data_dir/hj212-<uplink>.db``): open aggregates,
the minute/hour/day packets made from them, and the settings a platform changed.

Readings leave the outbox for this uplink only after they are folded in here (the highest
seq folded is committed with them, so a crash between the two never counts a reading
twice). A packet stays ``answered = 0`` until the platform's 9014 names it, and stays for
history pulls ``keep_days`` after its period. A minute packet keeps how many readings (and
valid ones) each device put into it: they count as delivered when it is answered.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buffer.database import connect

from .aggregate import Sample, aggregate_flag, expected_readings
from .packet import MINUTE

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS polls(cn TEXT, start INTEGER, span REAL, device TEXT, readings INTEGER,
    valid INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(cn, start, device));
CREATE TABLE IF NOT EXISTS acc(cn TEXT, start INTEGER, code TEXT, device TEXT, scale REAL,
    n_values INTEGER, n_valid INTEGER, n_over INTEGER, n_failed INTEGER, lo REAL, hi REAL, total REAL,
    PRIMARY KEY(cn, start, code));
CREATE TABLE IF NOT EXISTS packets(id INTEGER PRIMARY KEY AUTOINCREMENT, cn TEXT NOT NULL,
    start INTEGER NOT NULL, vals TEXT NOT NULL, answered INTEGER NOT NULL DEFAULT 0, counts TEXT, UNIQUE(cn, start));
CREATE INDEX IF NOT EXISTS packets_pending ON packets(answered, start);
"""

# columns added since the first release: (table, column, definition), added to older files
ADDED_COLUMNS = (("polls", "valid", "INTEGER NOT NULL DEFAULT 0"), ("packets", "counts", "TEXT"))

Stats = tuple[float, float, float, str] | tuple[None, None, None, str]
Delivery = tuple[str, int, int, int]  # (device, period start ms, readings, valid): see Hj212Store.answered


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    cn: str
    start: int  # epoch seconds of the period's start (its DataTime)
    values: dict[str, Stats]


def store_path(data_dir: Path, uplink: str) -> Path:
    return data_dir / f"hj212-{uplink}.db"


def count_stored_unanswered(data_dir: Path, uplink: str) -> int | None:
    """Stored packets of an HJ 212 uplink the platform has not answered yet, read only (for
    ``buffer stats``; the daemon may be running). None when the uplink has no store."""
    path = store_path(data_dir, uplink)
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM packets WHERE answered = 0").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def drop_store(data_dir: Path, uplink: str) -> str:
    """After ``buffer drop-uplink``: the HJ 212 uplink's stored packets are given up too, so an
    uplink of that name configured later does not send them (daemon stopped). The file is
    set aside as ``hj212-<uplink>.db.dropped``, not deleted. Returns what was done ("" for nothing)."""
    src = store_path(data_dir, uplink)
    if not src.exists():
        return ""
    waiting = _close_file(src)
    dst = src.with_name(src.name + ".dropped")
    src.replace(dst)
    return f"its HJ 212 store set aside as {dst.name} ({waiting} packets the platform never answered)"


def _close_file(src: Path) -> int:
    """Fold the store's WAL into its file so it can move as one file; its unanswered packets."""
    conn = sqlite3.connect(str(src))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        waiting = int(conn.execute("SELECT count(*) FROM packets WHERE answered = 0").fetchone()[0])
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(str(src) + suffix).unlink(missing_ok=True)
    return waiting


def rename_store(data_dir: Path, old: str, new: str) -> str:
    """After ``buffer rename-uplink``: the HJ 212 uplink's file follows its new name (daemon
    stopped). Returns what was done, for the technician ("" when there was nothing)."""
    src, dst = store_path(data_dir, old), store_path(data_dir, new)
    if not src.exists():
        return ""
    if dst.exists():
        return f"{dst.name} exists already: {src.name} (HJ 212 packets of '{old}') left as it is"
    waiting = _close_file(src)
    src.rename(dst)
    return f"its HJ 212 store moved to {dst.name} ({waiting} packets wait for the platform's answer)"


class Hj212Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)
        for table, column, definition in ADDED_COLUMNS:
            if column not in {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        # this object is the file's only writer: settings are read once and written through
        self._pending_meta: dict[str, Any] = {}
        self._meta: dict[str, Any] = {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def close(self) -> None:
        self.conn.close()

    # -- settings ---------------------------------------------------------------------
    def meta(self, key: str) -> Any:
        return self._meta.get(key)

    def set_meta(self, key: str, value: Any) -> None:
        """Written at once, or with the transaction it is part of (kept in memory only on commit)."""
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))
        self._pending_meta[key] = value
        if not self.conn.in_transaction:
            self._commit_meta()

    def _commit_meta(self) -> None:
        self._meta.update(self._pending_meta)
        self._pending_meta.clear()

    @property
    def folded_seq(self) -> int:
        return int(self.meta("folded_seq") or 0)

    # -- folding readings in --------------------------------------------------------------
    def fold(self, last_seq: int, readings: Iterable[tuple[str, list[Sample], dict[str, int], bool]],
             spans: dict[str, float]) -> int:
        """One transaction: each reading ``(device, samples, {cn: period start}, valid)`` added
        to its open periods (summed in memory first: one statement per period and factor);
        readings of a period already closed are left out. Returns how many were late."""
        closed = {cn: int(self.meta(f"closed:{cn}") or 0) for cn in spans}
        late = 0
        polls: dict[tuple[str, int, str], list[int]] = {}
        acc: dict[tuple[str, int, str], list[Any]] = {}
        for device, reading, starts, valid in readings:
            for cn, start in starts.items():
                if start < closed[cn]:
                    late += 1
                    continue
                key = (cn, start, device)
                counts = polls.setdefault(key, [0, 0])
                counts[0] += 1
                counts[1] += valid
                for s in reading:
                    _add(acc, (cn, start, s.point.code), s)
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT INTO polls(cn, start, span, device, readings, valid) VALUES (?, ?, ?, ?, ?, ?)"
                          " ON CONFLICT(cn, start, device) DO UPDATE SET readings = readings + excluded.readings,"
                          " valid = valid + excluded.valid",
                          [(cn, start, spans[cn], device, n, v) for (cn, start, device), (n, v) in polls.items()])
            c.executemany(
                "INSERT INTO acc VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(cn, start, code) DO UPDATE SET n_values = n_values + excluded.n_values,"
                " n_valid = n_valid + excluded.n_valid, n_over = n_over + excluded.n_over,"
                " n_failed = n_failed + excluded.n_failed,"
                " lo = coalesce(min(lo, excluded.lo), lo, excluded.lo),"
                " hi = coalesce(max(hi, excluded.hi), hi, excluded.hi), total = total + excluded.total",
                [(*key, *row) for key, row in acc.items()])
            self.set_meta("folded_seq", last_seq)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            self._pending_meta.clear()
            raise
        self._commit_meta()
        return late

    # -- closing periods -------------------------------------------------------------------
    def close_due(self, now: float, grace: float, intervals: dict[str, float]) -> list[Stored]:
        """Every open period that ended ``grace`` seconds before ``now`` becomes a packet (one transaction)."""
        c = self.conn
        due = c.execute("SELECT DISTINCT cn, start, span FROM polls WHERE start + span + ? <= ? ORDER BY start, cn",
                        (grace, now)).fetchall()
        if not due:
            return []
        made: list[Stored] = []
        closed: dict[str, int] = {}
        c.execute("BEGIN IMMEDIATE")
        try:
            for cn, start, span in due:
                values = self._period_values(cn, start, span, intervals)
                cur = c.execute("INSERT OR IGNORE INTO packets(cn, start, vals, counts) VALUES (?, ?, ?, ?)",
                                (cn, start, json.dumps(values), self._period_counts(cn, start)))
                c.execute("DELETE FROM acc WHERE cn = ? AND start = ?", (cn, start))
                c.execute("DELETE FROM polls WHERE cn = ? AND start = ?", (cn, start))
                closed[cn] = max(int(start + span), closed.get(cn, 0), int(self.meta(f"closed:{cn}") or 0))
                if cur.rowcount:
                    made.append(Stored(int(cur.lastrowid or 0), cn, start, values))
            for cn, end in closed.items():
                self.set_meta(f"closed:{cn}", end)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            self._pending_meta.clear()
            raise
        self._commit_meta()
        return made

    def _period_counts(self, cn: str, start: int) -> str | None:
        """The readings (and valid ones) each device put into a minute packet: counted as
        delivered when the platform answers it. Hour and day packets carry the same readings
        again: None."""
        if cn != MINUTE:
            return None
        rows = self.conn.execute("SELECT device, readings, valid FROM polls WHERE cn = ? AND start = ?", (cn, start))
        return json.dumps({device: [n, v] for device, n, v in rows})

    def next_end(self, grace: float) -> float | None:
        """When the earliest open period may be closed (epoch seconds), None when none is open."""
        row = self.conn.execute("SELECT min(start + span) FROM polls").fetchone()
        return None if row[0] is None else float(row[0]) + grace

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

    def answered(self, ids: list[int]) -> list[Delivery]:
        """Mark packets answered. Returns the deliveries this makes: each newly answered minute
        packet's readings per device, for the completeness counts."""
        out: list[Delivery] = []
        for i in ids:
            for start, counts in self.conn.execute("UPDATE packets SET answered = 1 WHERE id = ? AND answered = 0"
                                                   " RETURNING start, counts", (i,)).fetchall():
                if counts:
                    out += [(device, int(start) * 1000, n, v) for device, (n, v) in json.loads(counts).items()]
        return out

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


def _add(acc: dict[tuple[str, int, str], list[Any]], key: tuple[str, int, str], s: Sample) -> None:
    """Sample ``s`` into the in-memory sums of ``key``: [device, scale, n_values, n_valid,
    n_over, n_failed, lo, hi, total]."""
    row = acc.get(key)
    if row is None:
        row = acc[key] = [s.point.device, s.point.scale, 0, 0, 0, 0, None, None, 0.0]
    v = s.value
    if v is None:
        row[5] += 1
        return
    row[2] += 1
    row[4 if s.over_range else 3] += 1
    row[6] = v if row[6] is None else min(row[6], v)
    row[7] = v if row[7] is None else max(row[7], v)
    row[8] += v


def _stored(row: tuple[Any, ...]) -> Stored:
    values = {code: tuple(v) for code, v in json.loads(row[3]).items()}
    return Stored(int(row[0]), str(row[1]), int(row[2]), values)
