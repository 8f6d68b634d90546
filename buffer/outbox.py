"""The SQLite outbox: every reading stays on disk until each uplink that carries it has
a success acknowledgement. The only queue between polling and publishing.

One writer thread owns the write connection: it assigns ``seq``, inserts readings and
applies acknowledgements in group commits at most ``commit_interval`` apart
(WAL, ``synchronous=FULL``). Uplinks read through their own connections
(:meth:`Outbox.reader`). The store is capped at ``max_bytes`` (WAL included): when full,
the oldest readings are evicted in chunks, counted and recorded for announcement.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from drivers.reading import Reading

from .schema import migrate
from .seqfile import SeqReserve

log = logging.getLogger(__name__)

WAL_ALLOWANCE_MAX = 4 * 1024 * 1024
EVICT_FRACTION = 0.05
EVICT_MIN_ROWS = 500


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    device: str
    ts: int
    status: str
    vals: str  # JSON object text, spliced into payloads as is


@dataclass(frozen=True, slots=True)
class Eviction:
    id: int
    at: int
    first_seq: int
    last_seq: int
    count: int
    reason: str


@dataclass(slots=True)
class OutboxCounters:
    committed: int = 0
    commits: int = 0
    evicted: int = 0
    disk_full: int = 0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _is_full(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "full" in text or "no space" in text or getattr(exc, "sqlite_errorcode", 0) == 13


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the outbox; a corrupt file is moved aside, loudly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _connect(path)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {ok}")
        migrate(conn)
        return conn
    except sqlite3.DatabaseError as exc:
        if _is_full(exc):
            raise
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        log.error("BUFFER CORRUPT: %s (%s); moved aside to %s for forensics, starting a fresh one",
                  path, exc, aside)
        with contextlib.suppress(Exception):
            conn.close()
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        conn = _connect(path)
        migrate(conn)
        return conn


class Outbox:
    """Store-and-forward buffer for readings, shared by every uplink."""

    def __init__(
        self,
        path: str | Path,
        uplinks: Iterable[str] = (),
        *,
        max_bytes: int = 256 * 1024 * 1024,
        commit_interval: float = 0.25,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self.counters = OutboxCounters()
        self._conn = open_database(self.path)
        self._seqs = SeqReserve(self.path.with_name(self.path.name + ".seq"))
        self.page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        self.wal_allowance = min(WAL_ALLOWANCE_MAX, max(64 * 1024, max_bytes // 8))
        self._conn.execute(f"PRAGMA journal_size_limit={self.wal_allowance}")
        self._conn.execute(f"PRAGMA wal_autocheckpoint={max(16, self.wal_allowance // self.page_size // 2)}")
        self._apply_cap()
        self.uplink_bits = self._register_uplinks(list(uplinks))
        self._mask = 0
        for bit in self.uplink_bits.values():
            self._mask |= 1 << bit
        last = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
        self._next_seq = max((last[0] if last else 0) + 1, self._seqs.limit + 1 if self._seqs.limit else 1)
        if last is None and self._seqs.limit:
            log.warning("buffer: fresh database; seq continues at %d (never reused)", self._next_seq)
        self.last_seq = self._next_seq - 1
        self._queue: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._listeners: list[Callable[[int], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._synced = threading.Condition()
        self._sync_token = 0
        self._done_token = 0

    # -- set-up ---------------------------------------------------------------------
    def _apply_cap(self) -> None:
        pages = max(16, (self.max_bytes - self.wal_allowance) // self.page_size)
        self._conn.execute(f"PRAGMA max_page_count={pages}")

    def _register_uplinks(self, names: list[str]) -> dict[str, int]:
        c = self._conn
        known = {name: bit for bit, name in c.execute("SELECT bit, name FROM uplinks")}
        gone = [n for n in known if n not in names]
        c.execute("BEGIN IMMEDIATE")
        for name in gone:
            bit = known.pop(name)
            log.warning("buffer: uplink '%s' is no longer configured; its undelivered readings"
                        " are released for the others", name)
            c.execute("UPDATE readings SET pending = pending & ? WHERE pending & ?", (~(1 << bit), 1 << bit))
            c.execute("UPDATE evictions SET pending = pending & ?", (~(1 << bit),))
            c.execute("DELETE FROM uplinks WHERE bit = ?", (bit,))
        for name in names:
            if name not in known:
                used = set(known.values())
                bit = next(b for b in range(62) if b not in used)
                c.execute("INSERT INTO uplinks(bit, name) VALUES (?, ?)", (bit, name))
                known[name] = bit
        if gone:
            c.execute("DELETE FROM readings WHERE pending = 0")
        c.execute("COMMIT")
        return {n: known[n] for n in names}

    # -- the writer thread ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="outbox-writer", daemon=True)
        self._thread.start()

    def add_listener(self, callback: Callable[[int], None]) -> None:
        """``callback(last_seq)`` runs in the writer thread after each commit."""
        self._listeners.append(callback)

    def submit(self, reading: Reading) -> None:
        """Queue a reading for the next group commit (thread-safe, never blocks)."""
        self._queue.put(("r", reading))

    def ack(self, uplink: str, seqs: list[int]) -> None:
        """Record that ``uplink`` has a success acknowledgement for ``seqs``."""
        self._queue.put(("a", (self.uplink_bits[uplink], seqs)))

    def ack_evictions(self, uplink: str, ids: list[int]) -> None:
        self._queue.put(("e", (self.uplink_bits[uplink], ids)))

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is committed."""
        if self._thread is None or not self._thread.is_alive():
            self._drain_once(block=False)
            return True
        with self._synced:
            self._sync_token += 1
            token = self._sync_token
            self._queue.put(("s", token))
            return self._synced.wait_for(lambda: self._done_token >= token, timeout)

    def close(self) -> None:
        self._stop.set()
        self._queue.put(("x", None))
        if self._thread is not None:
            self._thread.join(timeout=10)
        else:
            self._drain_once(block=False)
        self._conn.close()

    def _writer(self) -> None:
        while not self._stop.is_set():
            try:
                self._drain_once(block=True)
            except Exception:
                log.exception("buffer writer failed; retrying")
                time.sleep(0.5)
        self._drain_once(block=False)

    def _drain_once(self, block: bool) -> None:
        items: list[tuple[str, object]] = []
        try:
            first = self._queue.get(timeout=0.5) if block else self._queue.get_nowait()
        except queue.Empty:
            return
        items.append(first)
        deadline = time.monotonic() + self.commit_interval
        while first[0] != "x" and len(items) < 20000:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            items.append(item)
            if item[0] in ("x", "s"):
                break
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        readings = [r for k, r in items if k == "r"]
        acks = [a for k, a in items if k == "a"]
        eacks = [a for k, a in items if k == "e"]
        tokens = [int(t) for k, t in items if k == "s"]  # type: ignore[call-overload]
        if readings or acks or eacks:
            self._commit(readings, acks, eacks)  # type: ignore[arg-type]
        if tokens:
            with self._synced:
                self._done_token = max(self._done_token, *tokens)
                self._synced.notify_all()

    def _commit(self, readings: list[Reading], acks: list[tuple[int, list[int]]],
                eacks: list[tuple[int, list[int]]]) -> None:
        while True:
            first = self._next_seq
            self._seqs.ensure(first, len(readings))
            rows = [
                (first + i, r.device, r.ts, r.status,
                 json.dumps(r.values, separators=(",", ":"), ensure_ascii=False), self._mask)
                for i, r in enumerate(readings)
            ]
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                if rows:
                    c.executemany("INSERT INTO readings(seq, device, ts, status, vals, pending)"
                                  " VALUES (?, ?, ?, ?, ?, ?)", rows)
                for bit, seqs in acks:
                    c.executemany("UPDATE readings SET pending = pending & ? WHERE seq = ?",
                                  [(~(1 << bit), s) for s in seqs])
                    c.executemany("DELETE FROM readings WHERE seq = ? AND pending = 0",
                                  [(s,) for s in seqs])
                for bit, ids in eacks:
                    c.executemany("UPDATE evictions SET pending = pending & ? WHERE id = ?",
                                  [(~(1 << bit), i) for i in ids])
                c.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                if not _is_full(exc):
                    raise
                self.counters.disk_full += 1
                log.error("buffer: disk or database full (%s); evicting the oldest readings", exc)
                if not self._evict("disk full"):
                    time.sleep(0.5)  # nothing left to evict: wait for space, keep running
                continue
            break
        if rows:
            self._next_seq = first + len(rows)
            self.last_seq = self._next_seq - 1
            self.counters.committed += len(rows)
        self.counters.commits += 1
        if self.used_bytes() > self.max_bytes:
            self._evict("max_bytes")
        for cb in self._listeners:
            cb(self.last_seq)

    # -- size and eviction -------------------------------------------------------------
    def used_bytes(self) -> int:
        c = self._conn
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        try:
            wal = os.path.getsize(str(self.path) + "-wal")
        except OSError:
            wal = 0
        return (pages - free) * self.page_size + wal

    def _evict(self, reason: str) -> bool:
        """Delete the oldest chunk of readings and record it. False if nothing was left."""
        c = self._conn
        total = c.execute("SELECT count(*) FROM readings").fetchone()[0]
        if total == 0:
            return False
        n = max(EVICT_MIN_ROWS, int(total * EVICT_FRACTION))
        first = c.execute("SELECT min(seq) FROM readings").fetchone()[0]
        last_row = c.execute("SELECT seq FROM readings ORDER BY seq LIMIT 1 OFFSET ?",
                             (min(n, total) - 1,)).fetchone()
        last = last_row[0]
        try:
            c.execute("BEGIN IMMEDIATE")
            cur = c.execute("DELETE FROM readings WHERE seq <= ?", (last,))
            count = cur.rowcount
            c.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending)"
                      " VALUES (?, ?, ?, ?, ?, ?)",
                      (int(time.time() * 1000), first, last, count, reason, self._mask))
            c.execute("INSERT INTO counters(name, value) VALUES ('evicted', ?)"
                      " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (count,))
            c.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if c.in_transaction:
                c.execute("ROLLBACK")
            log.error("buffer: eviction failed (%s)", exc)
            return False
        self.counters.evicted += count
        log.warning("BUFFER FULL (%s): evicted %d oldest readings, seq %d..%d", reason, count, first, last)
        with contextlib.suppress(sqlite3.OperationalError):
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    # -- readers -----------------------------------------------------------------------
    def reader(self) -> OutboxReader:
        """A read connection for one thread (uplinks, technician commands)."""
        return OutboxReader(self.path)


class OutboxReader:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA busy_timeout=30000")

    def fetch(self, bit: int, after: int, upto: int | None, limit: int) -> list[Row]:
        """Readings still pending for uplink ``bit`` with ``after < seq <= upto``, oldest first."""
        sql = "SELECT seq, device, ts, status, vals FROM readings WHERE seq > ? AND pending & ?"
        args: list[int] = [after, 1 << bit]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return [Row(*r) for r in self.conn.execute(sql, args)]

    def evictions(self, bit: int) -> list[Eviction]:
        return [Eviction(*r) for r in self.conn.execute(
            "SELECT id, at, first_seq, last_seq, count, reason FROM evictions WHERE pending & ?"
            " ORDER BY id", (1 << bit,))]

    def close(self) -> None:
        self.conn.close()
