"""Read side of the outbox: what uplinks fetch, one connection per thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .database import is_corrupt

ALARM_STATUS = "alarm"  # a row that is an alarm event: ``vals`` holds the event, not point values


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    device: str
    ts: int
    status: str
    vals: str  # JSON object text, spliced into payloads as is
    errors: str | None = None  # JSON object text {point: why} for a partial reading, else None
    flags: str | None = None  # JSON object text {point: flag} (over_range), else None


@dataclass(frozen=True, slots=True)
class Eviction:
    """Readings an uplink will never get: seq ``first_seq..last_seq`` (``count`` of them)."""

    id: int
    at: int
    first_seq: int
    last_seq: int
    count: int
    reason: str
    uplink: str | None = None


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class OutboxReader:
    """Autocommit reads: every statement is its own short read transaction, so a reader
    never pins the WAL (the writer's checkpoints always complete)."""

    def __init__(self, path: Path, generation: Callable[[], int] | None = None,
                 on_corrupt: Callable[[int, str], None] | None = None) -> None:
        self.path = path
        self._generation = generation
        self._on_corrupt = on_corrupt
        self._gen = generation() if generation else 0
        self.conn = _open(path)

    def _fresh(self) -> sqlite3.Connection:
        """Reopen after the writer replaced a corrupt file (a new generation)."""
        if self._generation is not None and self._generation() != self._gen:
            self._gen = self._generation()
            self.conn.close()
            self.conn = _open(self.path)
        return self.conn

    def _query(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return self._fresh().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            # the writer's cache can hide a page gone bad; a reader that hits it says so
            if self._on_corrupt is not None and is_corrupt(exc):
                self._on_corrupt(self._gen, str(exc))
            raise

    def fetch(self, bit: int, after: int, upto: int | None, limit: int) -> list[Row]:
        """Readings still pending for uplink ``bit`` with ``after < seq <= upto``, oldest first."""
        sql = "SELECT seq, device, ts, status, vals, errors, flags FROM readings WHERE seq > ? AND pending & ?"
        args: list[int] = [after, 1 << bit]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return [Row(*r) for r in self._query(sql, args)]

    def alarm_rows(self, bit: int, upto: int) -> list[Row]:
        """Alarm events still pending for uplink ``bit`` with ``seq <= upto``, oldest first (found
        through their history table: no scan of the whole backlog)."""
        return [Row(*r) for r in self._query(
            "SELECT r.seq, r.device, r.ts, r.status, r.vals, r.errors, r.flags FROM alarm_events a"
            " JOIN readings r ON r.seq = a.seq WHERE a.seq <= ? AND r.pending & ? ORDER BY a.seq",
            (upto, 1 << bit))]

    def evictions(self, bit: int) -> list[Eviction]:
        """Evicted ranges not yet announced by uplink ``bit``, oldest first."""
        return [Eviction(*r) for r in self._query(
            "SELECT id, at, first_seq, last_seq, count, reason, uplink FROM evictions WHERE pending & ?"
            " ORDER BY id", (1 << bit,))]

    def close(self) -> None:
        self.conn.close()
