"""The buffer's commits: what the writer holds goes to disk in transactions.

:class:`buffer.outbox.Outbox` gathers readings and requests from its queue; this part
decides what is due (held readings once their commit interval has passed, or sooner when
something queued after them waits for them; acknowledgements at once) and writes it. Each
transaction takes up to one chunk of readings with every acknowledgement, set-aside and
completeness count held so far (meta facts with the last chunk): a crash keeps all of a
transaction or none of it. A refused commit goes to :mod:`buffer.recovery`; changes of
uplinks and clock fixes (:mod:`buffer.live_changes`) follow the commit of the readings
queued before them. A mixin of the outbox: it shares the writer's state.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.reading import Reading

from .clockfix import ClockFix, note_held, stored_ts
from .completeness import POLLED, DayOf, add_counts, add_delivered, apply_acks
from .database import is_corrupt, is_full
from .jsontext import values_json
from .ranges import to_ranges
from .reader import ALARM_STATUS
from .recovery import OutboxCounters
from .seqfile import SeqReserve
from .uplinkbits import UplinkChange
from .writequeue import Delivered, SetAside

log = logging.getLogger("buffer.outbox")  # the writer's log, wherever its code lives

ALARM_HISTORY = 10_000  # alarm events kept in alarm_events for `edge-agent alarms`


class GroupCommit:
    """The commit side of the outbox's writer thread."""

    uplink_bits: dict[str, int]
    counters: OutboxCounters
    day_of: DayOf | None
    last_seq: int
    _conn: sqlite3.Connection
    _seqs: SeqReserve
    _chunk: int
    _mask: int
    _next_seq: int
    _listeners: list[Callable[[int], None]]
    _synced: threading.Condition
    _done_token: int
    _tokens: list[int]
    _held: list[Reading]
    _readings_due: float
    _acks: dict[tuple[int, bool], list[int]]
    _delivered: list[Delivered]
    _eacks: dict[int, list[int]]
    _asides: list[SetAside]
    _meta: dict[str, str]
    _changes: list[UplinkChange]
    _fixes: list[ClockFix]
    _sync_level: str
    _unrecorded_drops: int
    _trouble: str
    _corrupt: str

    if TYPE_CHECKING:  # recovery's and live changes', for the type checker only
        def _reset(self, error: str) -> None: ...
        def _note_trouble(self, exc: BaseException) -> None: ...
        def _make_room(self, exc: BaseException) -> bool: ...
        def _after_commit(self) -> None: ...
        def _apply_uplink_change(self, change: UplinkChange) -> None: ...
        def _release_held(self) -> bool: ...

    def _readings_due_now(self) -> bool:
        """Do the held readings go into this commit? Yes once their commit interval has passed,
        or when something queued after them needs them committed first."""
        return (not self._held or time.monotonic() >= self._readings_due or len(self._held) >= self._chunk
                or bool(self._tokens or self._meta or self._asides or self._changes or self._fixes or self._corrupt))

    def _flush(self, force: bool = False) -> bool:
        """Commit what is due: held readings once their commit interval has passed (every one
        with ``force``), acknowledgements at once (alone: no fsync). True when nothing due is
        left (sync tokens are then done)."""
        wrote = False
        readings = force or self._readings_due_now()
        while (self._corrupt or (self._held and readings) or self._acks or self._eacks or self._delivered
               or self._asides or self._meta):
            if self._corrupt:
                try:
                    self._reset(self._corrupt)
                except Exception as exc:  # kept: retried on the next round
                    self._note_trouble(exc)
                    return False
                self._corrupt = ""
                continue
            try:
                self._commit_step(with_readings=readings)
                wrote = True
            except (sqlite3.Error, OSError) as exc:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if is_corrupt(exc):
                    self._corrupt = str(exc)
                    continue
                full = isinstance(exc, sqlite3.Error) and is_full(exc)  # not an OSError from the seq file
                if full and self._make_room(exc):
                    continue
                if not full:
                    self.counters.io_errors += 1
                self._note_trouble(exc)
                return False
        if wrote:
            self._after_commit()
        if self._trouble:
            log.warning("buffer: commits succeed again (after: %s); %d readings committed so far",
                        self._trouble, self.counters.committed)
            self._trouble = ""
        for change in self._changes:
            self._apply_uplink_change(change)
        self._changes.clear()
        if not self._release_held():
            return False
        if self._tokens:
            with self._synced:
                self._done_token = max(self._done_token, *self._tokens)
                self._synced.notify_all()
            self._tokens.clear()
        return True

    def _commit_step(self, with_readings: bool) -> None:
        """One transaction: every held acknowledgement and up to one chunk of readings."""
        c = self._conn
        batch = self._held[: self._chunk] if with_readings else []
        first = self._next_seq
        if batch:
            self._seqs.ensure(first, len(batch))
        # acknowledgements alone need no fsync (see outbox.ACK_COMMIT); readings always get one
        level = "FULL" if batch or self._asides or self._unrecorded_drops else "NORMAL"
        if level != self._sync_level:
            c.execute(f"PRAGMA synchronous={level}")
            self._sync_level = level
        c.execute("BEGIN IMMEDIATE")
        if batch:
            c.executemany(
                "INSERT INTO readings(seq, device, ts, status, vals, pending, errors, flags)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(first + i, r.device, stored_ts(r), r.status, values_json(r.values), self._mask,
                  values_json(r.errors) if r.errors else None, values_json(r.flags) if r.flags else None)
                 for i, r in enumerate(batch)])
            note_held(c, first, batch)
            self._record_events(first, batch)
        meta = self._meta if len(batch) == len(self._held) else {}  # with the last chunk of readings
        if meta:
            c.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
        if batch and self.day_of is not None:
            # a held reading has no UTC time yet: it is counted when the clock fix gives it one
            add_counts(c, POLLED, ((r.device, r.ts, r.status) for r in batch if r.clock is None), self.day_of)
        for (bit, counted), seqs in self._acks.items():
            self._apply_acks(bit, seqs, counted)
        if self.day_of is not None:
            for d in self._delivered:
                add_delivered(c, d.uplink, d.rows, self.day_of)
        for bit, ids in self._eacks.items():
            c.executemany("UPDATE evictions SET pending = pending & ? WHERE id = ?",
                          [(~(1 << bit), i) for i in ids])
        self._record_losses()
        c.execute("COMMIT")
        self._unrecorded_drops = 0
        if meta:
            self._meta = {}
        self._acks.clear()
        self._eacks.clear()
        self._delivered.clear()
        announce = bool(batch or self._asides)
        if self._asides:
            self.counters.eviction_records += len(self._asides)
            self._asides.clear()
        self.counters.commits += 1
        if batch:
            del self._held[: len(batch)]
            self._next_seq = first + len(batch)
            self.last_seq = self._next_seq - 1
            self.counters.committed += len(batch)
        if announce:  # new readings or new eviction records: sleeping uplinks have work
            for cb in self._listeners:
                cb(self.last_seq)

    def _record_losses(self) -> None:
        """Inside the commit's transaction: readings set aside leave their uplink's backlog,
        recorded as one-reading losses to announce; readings dropped from memory are counted."""
        c = self._conn
        at = int(time.time() * 1000)
        for a in self._asides:  # leaves the uplink's backlog, announced as a loss
            c.execute("DELETE FROM readings WHERE seq = ? AND (pending & ?) = 0", (a.seq, ~(1 << a.bit)))
            c.execute("UPDATE readings SET pending = pending & ? WHERE seq = ?", (~(1 << a.bit), a.seq))
            c.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending, uplink)"
                      " VALUES (?, ?, ?, 1, ?, ?, ?)", (at, a.seq, a.seq, a.why, 1 << a.bit, a.uplink))
        if self._unrecorded_drops:
            c.execute("INSERT INTO counters(name, value) VALUES ('dropped', ?)"
                      " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (self._unrecorded_drops,))

    def _apply_acks(self, bit: int, seqs: list[int], counted: bool) -> None:
        """Clear ``bit`` on acknowledged readings (inside the commit's transaction); with
        ``day_of`` and ``counted``, count each reading whose bit this clears as delivered by
        that uplink."""
        names = {b: n for n, b in self.uplink_bits.items()}
        uplink = names.get(bit) if self.day_of and counted else None
        apply_acks(self._conn, bit, to_ranges(seqs), uplink, self.day_of)

    def _record_events(self, first: int, batch: list[Reading]) -> None:
        """Alarm events also go to their history table, which keeps the last ALARM_HISTORY."""
        events = [(first + i, r.device, r.ts, values_json(r.values)) for i, r in enumerate(batch)
                  if r.status == ALARM_STATUS]
        if not events:
            return
        c = self._conn
        c.executemany("INSERT INTO alarm_events(seq, device, ts, event) VALUES (?, ?, ?, ?)", events)
        c.execute("DELETE FROM alarm_events WHERE seq <= (SELECT seq FROM alarm_events ORDER BY seq DESC"
                  " LIMIT 1 OFFSET ?)", (ALARM_HISTORY,))
