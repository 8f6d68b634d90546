"""The control audit log: every command, schedule step and technician write, in SQLite.

A database of its own (``control.db`` in the data directory), independent of the outbox,
in WAL mode so ``edge-agent control log`` reads it beside a running daemon. Besides the
log it keeps the first reply to each command id (so a redelivered command is answered
again, never executed twice; bounded) and the last switching of each relay point (for
``min_toggle``). Schema changes go through ``MIGRATIONS`` and ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DB_NAME = "control.db"
KEEP_REPLIES = 10_000
Kind = Literal["command", "schedule", "technician"]

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY,
        ts        INTEGER NOT NULL,          -- epoch ms
        kind      TEXT NOT NULL,             -- command | schedule | technician
        source    TEXT NOT NULL,             -- uplink name, schedule name, or 'technician'
        device    TEXT NOT NULL,
        ref       TEXT,                      -- command id, schedule step
        asked     TEXT NOT NULL,             -- JSON: values asked
        read_back TEXT,                      -- JSON: values read back after the write
        result    TEXT NOT NULL,             -- ok | refused | expired | failed
        reason    TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_device ON audit (device, id);
    CREATE TABLE replies (
        source     TEXT NOT NULL,
        device     TEXT NOT NULL,
        command_id TEXT NOT NULL,
        ts         INTEGER NOT NULL,
        reply      TEXT NOT NULL,
        PRIMARY KEY (source, device, command_id)
    );
    CREATE INDEX replies_ts ON replies (ts);
    CREATE TABLE toggles (
        device TEXT NOT NULL,
        point  TEXT NOT NULL,
        value  TEXT NOT NULL,
        ts     INTEGER NOT NULL,
        PRIMARY KEY (device, point)
    );
    """,
]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: int
    kind: str
    source: str
    device: str
    ref: str | None
    asked: dict[str, Any]
    read_back: dict[str, Any] | None
    result: str
    reason: str


class AuditLog:
    """Read-write access for the daemon (and tests); :func:`read_entries` for the CLI."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.execute("PRAGMA journal_mode=WAL")
        migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def record(self, kind: Kind, source: str, device: str, asked: dict[str, Any], result: str,
               reason: str = "", read_back: dict[str, Any] | None = None, ref: str | None = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO audit (ts, kind, source, device, ref, asked, read_back, result, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.now_ms(), kind, source, device, ref, json.dumps(asked, sort_keys=True),
             None if read_back is None else json.dumps(read_back, sort_keys=True), result, reason))
        return int(cur.lastrowid or 0)

    def entries(self, device: str | None = None, limit: int = 50) -> list[AuditEntry]:
        return query_entries(self.conn, device, limit)

    # -- command replies (duplicates) -----------------------------------------------------

    def first_reply(self, source: str, device: str, command_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT reply FROM replies WHERE source=? AND device=? AND command_id=?",
                                (source, device, command_id)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def keep_reply(self, source: str, device: str, command_id: str, reply: dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT OR IGNORE INTO replies (source, device, command_id, ts, reply)"
                              " VALUES (?, ?, ?, ?, ?)",
                              (source, device, command_id, self.now_ms(), json.dumps(reply, sort_keys=True)))
            self.conn.execute("DELETE FROM replies WHERE rowid IN (SELECT rowid FROM replies ORDER BY ts DESC,"
                              " rowid DESC LIMIT -1 OFFSET ?)", (KEEP_REPLIES,))

    # -- relay switching (min_toggle) -----------------------------------------------------

    def last_switch(self, device: str, point: str) -> tuple[Any, int] | None:
        """(value, epoch ms) of the last write that changed this point, or None."""
        row = self.conn.execute("SELECT value, ts FROM toggles WHERE device=? AND point=?", (device, point)).fetchone()
        return None if row is None else (json.loads(row[0]), int(row[1]))

    def note_switch(self, device: str, point: str, value: Any) -> None:
        last = self.last_switch(device, point)
        if last is None or last[0] != value:
            self.conn.execute("INSERT OR REPLACE INTO toggles (device, point, value, ts) VALUES (?, ?, ?, ?)",
                              (device, point, json.dumps(value), self.now_ms()))


def migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise RuntimeError(f"control database schema {version} is newer than this edge-agent ({len(MIGRATIONS)})")
    for n in range(version, len(MIGRATIONS)):
        conn.executescript(f"BEGIN; {MIGRATIONS[n]}; PRAGMA user_version={n + 1}; COMMIT;")


def query_entries(conn: sqlite3.Connection, device: str | None, limit: int) -> list[AuditEntry]:
    sql = "SELECT id, ts, kind, source, device, ref, asked, read_back, result, reason FROM audit"
    args: list[Any] = []
    if device is not None:
        sql += " WHERE device=?"
        args.append(device)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    rows = conn.execute(sql, args).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]),
                       None if r[7] is None else json.loads(r[7]), r[8], r[9]) for r in reversed(rows)]


def read_entries(path: Path, device: str | None = None, limit: int = 50) -> list[AuditEntry]:
    """The newest ``limit`` entries, oldest first, read-only (safe beside a running daemon)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        return query_entries(conn, device, limit)
    finally:
        conn.close()


def db_path(data_dir: str, config_file: Path) -> Path:
    """``control.db`` in the data directory (a relative data_dir is beside the config file)."""
    base = Path(data_dir)
    if not base.is_absolute():
        base = config_file.resolve().parent / base
    return base / DB_NAME
