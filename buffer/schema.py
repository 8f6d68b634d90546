"""The outbox schema as ordered migrations, each recorded in ``schema_migrations``.

A migration is applied once, in order, in its own transaction; its version, name and time
are recorded in the database, so ``edge-agent buffer stats`` can say which schema a file
has. Never edit a released migration: add the next one.
"""

from __future__ import annotations

import sqlite3
import time

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "readings outbox with per-uplink delivery bits",
        """
        CREATE TABLE readings (
            seq     INTEGER PRIMARY KEY AUTOINCREMENT,
            device  TEXT    NOT NULL,
            ts      INTEGER NOT NULL,
            status  TEXT    NOT NULL,
            vals    TEXT    NOT NULL,
            pending INTEGER NOT NULL
        );
        CREATE TABLE uplinks (
            bit  INTEGER PRIMARY KEY,
            name TEXT    NOT NULL UNIQUE
        );
        CREATE TABLE evictions (
            id        INTEGER PRIMARY KEY,
            at        INTEGER NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq  INTEGER NOT NULL,
            count     INTEGER NOT NULL,
            reason    TEXT    NOT NULL,
            pending   INTEGER NOT NULL
        );
        CREATE TABLE counters (
            name  TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        """,
    ),
    (
        2,
        "evictions name the uplink that lost the range; meta facts about the file",
        """
        ALTER TABLE evictions ADD COLUMN uplink TEXT;
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    ),
    (
        3,
        "quality per point: a reading's bad points and flagged values",
        """
        ALTER TABLE readings ADD COLUMN errors TEXT;
        ALTER TABLE readings ADD COLUMN flags TEXT;
        """,
    ),
    (
        4,
        "alarm events: the history of raised and cleared alarms (delivery goes through readings)",
        """
        CREATE TABLE alarm_events (
            seq    INTEGER PRIMARY KEY,
            device TEXT    NOT NULL,
            ts     INTEGER NOT NULL,
            event  TEXT    NOT NULL
        );
        """,
    ),
]

LATEST = max(v for v, _, _ in MIGRATIONS)


def committed_seq(conn: sqlite3.Connection) -> int:
    """The highest seq ever committed (AUTOINCREMENT keeps it after rows are deleted); 0 if none."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
    return int(row[0]) if row else 0


def applied_version(conn: sqlite3.Connection) -> int:
    """The highest migration recorded in the file (0 for a file without the table)."""
    try:
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply every migration not yet recorded (up to ``upto``), each in its own transaction;
    the connection must be in autocommit mode. Return the schema version of the file."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    newer = [v for v in done if v > LATEST]
    if newer:
        raise RuntimeError(f"the buffer has schema version {max(newer)}, newer than this edge-agent"
                           f" knows ({LATEST}); upgrade edge-agent or move the file aside")
    for version, name, sql in MIGRATIONS:
        if version in done or (upto is not None and version > upto):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, int(time.time())),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return applied_version(conn)
