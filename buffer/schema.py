"""The outbox schema as ordered migrations, each recorded in ``schema_migrations``."""

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
]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration not yet recorded, each in its own transaction (the connection
    must be in autocommit mode); return the schema version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, name, sql in MIGRATIONS:
        if version in done:
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
    return max((v for v, _, _ in MIGRATIONS), default=0)
