"""Alarm facts as the buffer keeps them: the raised set (meta ``alarms``) and the event history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .engine import STATE_KEY


def _connect(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def saved_state(conn: sqlite3.Connection) -> dict[str, Any]:
    """The raised alarms recorded with their last event: {name: {since, value, threshold}}."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (STATE_KEY,)).fetchone()
    except sqlite3.OperationalError:  # a file older than the meta table
        return {}
    if not row:
        return {}
    try:
        state = json.loads(row[0])
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def recent_events(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The last ``limit`` alarm events, oldest first, each ``{"seq", "ts", "device", ...event}``."""
    try:
        rows = conn.execute("SELECT seq, device, ts, event FROM alarm_events ORDER BY seq DESC LIMIT ?",
                            (limit,)).fetchall()
    except sqlite3.OperationalError:  # a file from before alarms
        return []
    return [{"seq": seq, "ts": ts, "device": device, **json.loads(event)} for seq, device, ts, event in reversed(rows)]


def read_store(db: Path, limit: int = 50) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(raised state, last events) from the buffer file, without the daemon; empty when there is none."""
    conn = _connect(db)
    if conn is None:
        return {}, []
    try:
        return saved_state(conn), recent_events(conn, limit)
    finally:
        conn.close()
