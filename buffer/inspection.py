"""Read-only views of a buffer file for technicians: stats and export.

Everything here opens the file read-only and reads in short statements (an export goes in
chunks of seq), so it is safe while the daemon runs: it never blocks the writer and never
pins the WAL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clockfix import held_count
from .database import connect_readonly
from .reader import ALARM_STATUS, Eviction, Row
from .schema import LATEST, applied_version, committed_seq
from .space import file_size, reserve_path, wal_path

EXPORT_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class UplinkDepth:
    name: str
    bit: int
    pending: int
    oldest_seq: int | None
    oldest_ts: int | None


@dataclass(slots=True)
class BufferStats:
    path: Path
    schema_version: int
    schema_latest: int
    last_seq: int
    readings: int
    first_seq: int | None
    file_bytes: int
    wal_bytes: int
    reserve_bytes: int
    free_pages_bytes: int
    uplinks: list[UplinkDepth]
    evictions: list[Eviction]
    counters: dict[str, int]
    reset: dict[str, Any] | None = None
    orphans: int = 0  # readings pending only for uplinks no longer configured
    held: int = 0  # readings held until the clock is known good (buffer.clockfix)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def used_bytes(self) -> int:
        return self.file_bytes + self.wal_bytes + self.reserve_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "schema_version": self.schema_version, "schema_latest": self.schema_latest,
            "last_seq": self.last_seq, "readings": self.readings, "first_seq": self.first_seq,
            "bytes": {"used": self.used_bytes, "file": self.file_bytes, "wal": self.wal_bytes,
                      "reserve": self.reserve_bytes, "free_pages": self.free_pages_bytes},
            "uplinks": [{"name": u.name, "pending": u.pending, "oldest_seq": u.oldest_seq,
                         "oldest_ts": u.oldest_ts} for u in self.uplinks],
            "evictions": [{"id": e.id, "at": e.at, "uplink": e.uplink, "first_seq": e.first_seq,
                           "last_seq": e.last_seq, "count": e.count, "reason": e.reason} for e in self.evictions],
            "counters": self.counters, "reset": self.reset, "held_for_clock": self.held, **self.extra,
        }


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def read_stats(path: Path) -> BufferStats:
    conn = connect_readonly(path)
    try:
        version = applied_version(conn)
        last_seq = committed_seq(conn)
        count, first = conn.execute("SELECT count(*), min(seq) FROM readings").fetchone()
        uplinks = []
        mask = 0
        for bit, name in conn.execute("SELECT bit, name FROM uplinks ORDER BY bit").fetchall():
            mask |= 1 << bit
            pending, oldest = conn.execute("SELECT count(*), min(seq) FROM readings WHERE pending & ?",
                                           (1 << bit,)).fetchone()
            ts = None
            if oldest is not None:
                ts = conn.execute("SELECT ts FROM readings WHERE seq = ?", (oldest,)).fetchone()[0]
            uplinks.append(UplinkDepth(name, bit, pending, oldest, ts))
        orphans = conn.execute("SELECT count(*) FROM readings WHERE pending & ? = 0", (mask,)).fetchone()[0]
        held = held_count(conn)
        has_uplink_col = version >= 2
        evictions = [Eviction(*r) for r in conn.execute(
            "SELECT id, at, first_seq, last_seq, count, reason, "
            + ("uplink" if has_uplink_col else "NULL") + " FROM evictions ORDER BY id")]
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        reset = None
        if _table_exists(conn, "meta"):
            row = conn.execute("SELECT value FROM meta WHERE key = 'reset'").fetchone()
            reset = json.loads(row[0]) if row else None
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    return BufferStats(
        path=path, schema_version=version, schema_latest=LATEST, last_seq=last_seq,
        readings=count, first_seq=first, file_bytes=file_size(path), wal_bytes=file_size(wal_path(path)),
        reserve_bytes=file_size(reserve_path(path)), free_pages_bytes=free_pages * page_size,
        uplinks=uplinks, evictions=evictions, counters=counters, reset=reset, orphans=orphans,
        held=held)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    devices: tuple[str, ...] = ()
    uplink: str | None = None  # only readings this uplink has not received yet


class Exporter:
    """Readings matching a filter, oldest first, read in chunks of seq."""

    def __init__(self, path: Path, flt: ExportFilter) -> None:
        self.conn = connect_readonly(path)
        self.flt = flt
        self.bit: int | None = None
        if flt.uplink is not None:
            row = self.conn.execute("SELECT bit FROM uplinks WHERE name = ?", (flt.uplink,)).fetchone()
            if row is None:
                known = [r[0] for r in self.conn.execute("SELECT name FROM uplinks")]
                self.conn.close()
                raise LookupError(f"no uplink '{flt.uplink}' in this buffer (it has: {', '.join(known) or 'none'})")
            self.bit = int(row[0])
        self.damaged: list[tuple[int, int]] = []  # seq ranges that could not be read (a corrupt file)
        try:  # a file written before quality per point (schema 3) has no errors/flags columns
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(readings)")}
        except sqlite3.DatabaseError:
            columns = set()
        self._quality = "errors, flags" if {"errors", "flags"} <= columns else "NULL, NULL"
        try:
            lo, hi = self.conn.execute("SELECT min(seq), max(seq) FROM readings").fetchone()
        except sqlite3.DatabaseError:  # a damaged file: walk the whole seq range, skipping bad parts
            lo, hi = 1, committed_seq(self.conn)
        self.first_seq: int = lo or 0
        self.last_seq: int = hi or 0

    def _where(self) -> tuple[str, list[Any]]:
        sql: list[str] = ["seq > ?", "seq <= ?", "status != ?"]  # alarm events: `edge-agent alarms`
        args: list[Any] = [ALARM_STATUS]
        if self.flt.since_ms is not None:
            sql.append("ts >= ?")
            args.append(self.flt.since_ms)
        if self.flt.until_ms is not None:
            sql.append("ts < ?")
            args.append(self.flt.until_ms)
        if self.flt.devices:
            sql.append(f"device IN ({','.join('?' * len(self.flt.devices))})")
            args.extend(self.flt.devices)
        if self.bit is not None:
            sql.append("pending & ?")
            args.append(1 << self.bit)
        return " AND ".join(sql), args

    def value_keys(self) -> list[str]:
        """Every value name in the matching readings (for CSV columns), in first-seen order."""
        where, args = self._where()
        try:
            rows = self.conn.execute(
                f"SELECT key, min(seq) AS first FROM readings, json_each(readings.vals) WHERE {where}"
                " GROUP BY key ORDER BY first, key", [0, self.last_seq, *args]).fetchall()
            return [r[0] for r in rows]
        except sqlite3.DatabaseError:  # an SQLite without JSON functions, or a damaged file
            seen: dict[str, None] = {}
            for chunk in self.chunks():
                for r in chunk:
                    for k in json.loads(r.vals):
                        seen.setdefault(k, None)
            return list(seen)

    def chunks(self, progress: Callable[[int], None] | None = None) -> Iterator[list[Row]]:
        where, args = self._where()
        self.damaged = []
        after = 0
        step = EXPORT_CHUNK
        while after < self.last_seq:
            try:
                rows = [Row(*r) for r in self.conn.execute(
                    f"SELECT seq, device, ts, status, vals, {self._quality} FROM readings WHERE {where}"
                    " ORDER BY seq LIMIT ?",
                    [after, min(self.last_seq, after + step), *args, EXPORT_CHUNK])]
            except sqlite3.DatabaseError:
                if step > 1:  # narrow down to the damaged part
                    step = max(1, step // 10)
                    continue
                self.damaged.append((after + 1, after + 1))
                after += 1
                continue
            if not rows:
                if after + step >= self.last_seq:
                    break
                after += step
                step = min(EXPORT_CHUNK * 100, step * 10)
                continue
            after = rows[-1].seq
            step = max(step, EXPORT_CHUNK)
            yield rows
            if progress is not None:
                progress(after)
        if progress is not None:
            progress(self.last_seq)

    def close(self) -> None:
        self.conn.close()
