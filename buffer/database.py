"""Opening the outbox file: pragmas, error classes, and a corrupt file moved aside.

SQLite errors are told apart by their result codes, never by guessing from the text: only
``SQLITE_CORRUPT`` / ``SQLITE_NOTADB`` (or a failed ``quick_check``) make a file corrupt.
A locked, unreadable or full file is *not* corrupt and is never moved aside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .schema import committed_seq, migrate

log = logging.getLogger(__name__)

SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26


def _primary(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_full(exc: BaseException) -> bool:
    """The database or the disk is full (``max_page_count`` reached or ENOSPC)."""
    return _primary(exc) == SQLITE_FULL or (isinstance(exc, OSError) and exc.errno == 28)


def is_corrupt(exc: BaseException) -> bool:
    return _primary(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def is_io_error(exc: BaseException) -> bool:
    return _primary(exc) == SQLITE_IOERR or isinstance(exc, OSError)


def connect(path: Path) -> sqlite3.Connection:
    """The writer's connection: WAL, ``synchronous=FULL`` (a commit survives a power cut)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that never blocks the daemon's writer (WAL readers don't)."""
    if not path.exists():
        raise FileNotFoundError(f"no buffer at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass(frozen=True, slots=True)
class ResetInfo:
    """A corrupt file was moved aside; what could still be read from it."""

    aside: Path
    error: str
    first_pending: int | None  # lowest seq still buffered in the old file, if readable
    last_seq: int | None  # highest seq ever committed to the old file, if readable
    pending: int | None  # how many readings it still held, if readable


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return aside


def _salvage_facts(aside: Path, error: str) -> ResetInfo:
    first = last = count = None
    with contextlib.suppress(Exception):
        conn = connect_readonly(aside)
        try:
            with contextlib.suppress(Exception):
                last = committed_seq(conn)
            with contextlib.suppress(Exception):
                first, count = conn.execute("SELECT min(seq), count(*) FROM readings").fetchone()
        finally:
            conn.close()
    return ResetInfo(aside, error, first, last, count)


def move_aside(path: Path, error: str) -> ResetInfo:
    """Rename a corrupt database (and its WAL and shm) for forensics; say so loudly."""
    aside = _aside_name(path)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    info = _salvage_facts(aside, error)
    log.error("BUFFER CORRUPT: %s (%s); moved aside to %s (readings it held: %s, seq %s..%s); "
              "starting a fresh buffer", path, error, aside,
              "unknown" if info.pending is None else info.pending,
              "?" if info.first_pending is None else info.first_pending,
              "?" if info.last_seq is None else info.last_seq)
    return info


def open_database(path: Path) -> tuple[sqlite3.Connection, ResetInfo | None]:
    """Open (creating or migrating) the outbox. A corrupt file is moved aside and a fresh
    one created; the :class:`ResetInfo` says what was lost. Any other error propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {ok}")
        migrate(conn)
        return conn, None
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if not (is_corrupt(exc) or text.startswith("quick_check:")):
            if conn is not None:
                conn.close()
            raise
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        info = move_aside(path, text)
        conn = connect(path)
        migrate(conn)
        return conn, info
