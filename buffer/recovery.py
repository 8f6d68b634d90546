"""When the disk says no: a full store, a failing disk, a corrupt file.

The buffer's writer commits (:mod:`buffer.commit`); this is what it does when a commit
fails. A full store frees room (pending acknowledgements first, then the oldest readings,
evicted loudly and recorded for every uplink to announce, then the reserve file); a
corrupt file is moved aside and the agent carries on in a fresh one, announcing what may
be lost; other errors keep the readings in memory and retry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.reading import Reading

from .database import ResetInfo, connect, is_full, move_aside
from .eviction import evict_oldest, record_loss
from .schema import migrate
from .space import SpaceGuard
from .uplinkbits import register_uplinks
from .writequeue import Delivered, SetAside

log = logging.getLogger("buffer.outbox")


@dataclass(slots=True)
class OutboxCounters:
    committed: int = 0
    commits: int = 0
    evicted: int = 0
    eviction_records: int = 0  # rows added to the evictions table (each one to announce)
    disk_full: int = 0
    io_errors: int = 0
    dropped: int = 0  # never committed: held in memory longer than the disk allowed
    resets: int = 0  # corrupt files moved aside
    clock_releases: int = 0  # times held readings were given UTC times (uplinks read the buffer again)


class Recovery:
    """The failure side of :class:`buffer.outbox.Outbox` (a mixin: it shares the writer's state)."""

    path: Path
    space: SpaceGuard
    wal_allowance: int
    uplink_bits: dict[str, int]
    generation: int
    counters: OutboxCounters
    _conn: sqlite3.Connection
    _next_seq: int
    _held: list[Reading]
    _acks: dict[tuple[int, bool], list[int]]
    _delivered: list[Delivered]
    _eacks: dict[int, list[int]]
    _asides: list[SetAside]
    _sync_level: str
    _trouble: str
    _aside: ResetInfo | None

    if TYPE_CHECKING:  # the writer's, for the type checker only: a stub here would hide it at run time
        def _commit_step(self, with_readings: bool) -> None: ...

    def _record_reset(self, info: ResetInfo) -> None:
        """A corrupt file was moved aside: announce the seqs it may have held as lost."""
        self.counters.resets += 1
        last = self._next_seq - 1
        if info.pending is None:
            first, count = 1, 0  # contents unreadable: anything not received up to `last` is lost
        elif info.first_pending is not None:
            first, count = info.first_pending, info.pending
        else:  # it held nothing: only the unused seqs up to the new start are announced
            first, count = (info.last_seq or 0) + 1, 0
        facts = {"at": int(time.time() * 1000), "aside": str(info.aside), "error": info.error,
                 "lost_first_seq": first, "lost_last_seq": last, "lost_count": count}
        self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('reset', ?)", (json.dumps(facts),))
        reason = f"corrupt buffer moved aside to {info.aside.name}"
        if info.pending is None:
            reason += " (unreadable: count unknown)"
        records = record_loss(self._conn, self.uplink_bits, first, last, count, reason)
        self.counters.eviction_records += records

    def _note_trouble(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self._trouble:
            log.error("buffer: cannot commit (%s); %d readings wait in memory, retrying", text, len(self._held))
        self._trouble = text

    def _make_room(self, exc: BaseException) -> bool:
        """The store is full: free space (acknowledgements, eviction, the reserve). True if
        something was freed and the commit is worth retrying."""
        self.counters.disk_full += 1
        c = self._conn
        if self._acks or self._eacks:
            try:  # acknowledgements delete rows: they may make room by themselves
                self._commit_step(with_readings=False)
                return True
            except (sqlite3.Error, OSError):
                if c.in_transaction:
                    c.execute("ROLLBACK")
        reason = "max_bytes" if self.space.at_static_cap() else "disk full"
        try:
            evicted = evict_oldest(c, self.uplink_bits, reason)
        except (sqlite3.Error, OSError) as exc2:
            if not is_full(exc2):
                log.error("buffer: eviction failed: %s", exc2)
                return False
            evicted = None  # even a DELETE needs room (the WAL grows first)
        if evicted is None:
            # nothing to evict, or no room to evict: the reserve file gives the WAL and the
            # checkpoint room, once
            if self.space.release_reserve():
                with contextlib.suppress(sqlite3.Error):
                    c.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.space.update_cap(c)
                return True
            return False
        self.counters.evicted += evicted.count
        self.counters.eviction_records += evicted.records
        log.warning("BUFFER FULL (%s): evicted %d oldest readings, seq %d..%d (%s)", reason, evicted.count,
                    evicted.first_seq, evicted.last_seq, exc)
        self.space.update_cap(c)
        return True

    def _reset(self, error: str) -> None:
        """The file turned out corrupt while running: move it aside, carry on in a fresh one.
        Acknowledgements for the old file's readings are moot (announced as lost instead)."""
        bits = dict(self.uplink_bits)
        self._acks.clear()
        self._eacks.clear()
        self._delivered.clear()
        self._asides.clear()
        with contextlib.suppress(Exception):
            self._conn.close()
        if self.path.exists():  # not yet moved by an earlier attempt that failed half-way
            self._aside = move_aside(self.path, error)
        info = self._aside
        assert info is not None
        self._conn = connect(self.path)
        self._sync_level = "FULL"
        migrate(self._conn)
        self.space.configure(self._conn)
        self.uplink_bits = register_uplinks(self._conn, list(bits), keep=bits)
        self.generation += 1
        self._record_reset(info)

    def _after_commit(self) -> None:
        """Housekeeping between commits: the page cap follows the disk, the WAL stays small."""
        c = self._conn
        with contextlib.suppress(sqlite3.Error, OSError):
            self.space.update_cap(c)
            if self.space.wal_bytes() > 2 * self.wal_allowance:
                # a long reader held the WAL; shrink it without waiting long for readers
                c.execute("PRAGMA busy_timeout=50")
                try:
                    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    c.execute("PRAGMA busy_timeout=30000")
            if not self.space.reserve_held:
                self.space.take_reserve()
                self.space.update_cap(c)
