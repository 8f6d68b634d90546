"""The SQLite outbox: every reading stays on disk until each uplink that carries it has
a success acknowledgement. The only queue between polling and publishing.

One writer thread owns the write connection: it assigns ``seq`` and inserts readings in
group commits at most ``commit_interval`` apart (WAL, ``synchronous=FULL``: a process
crash loses nothing committed, a power cut at most the last interval). Acknowledgements
are applied as range statements within ``ACK_COMMIT`` of arriving, alone without an
fsync (an acknowledgement lost is a duplicate, never a loss). Uplinks read through
their own connections (:meth:`Outbox.reader`).

The store is capped at ``max_bytes`` (WAL included) and at what the disk allows
(:mod:`buffer.space`). When full, the oldest readings are evicted in chunks, counted, and
the exact seq ranges each uplink lost are recorded for announcement (:mod:`buffer.eviction`).
Given ``day_of``, the same transactions count readings polled and delivered per uplink per
local day (:mod:`buffer.completeness`).
When the disk cannot take a commit at all, readings wait in memory (bounded, counted when
dropped) and the writer retries: it keeps running and never corrupts the file.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from drivers.reading import Reading

from .clockfix import ClockFix, note_held, stored_ts
from .completeness import POLLED, DayOf, add_counts, apply_acks
from .database import ResetInfo, is_corrupt, is_full, open_database
from .eviction import EVICT_FRACTION, EVICT_MIN_ROWS
from .jsontext import values_json
from .live_changes import LiveChanges
from .ranges import to_ranges
from .reader import ALARM_STATUS, Eviction, OutboxReader, Row
from .recovery import OutboxCounters, Recovery
from .schema import committed_seq
from .seqfile import SeqReserve
from .space import SpaceGuard
from .uplinkbits import UplinkChange, register_uplinks
from .writequeue import (
    ACK_ITEMS,
    Acked,
    CorruptFound,
    EvictionsAnnounced,
    HoldFromNow,
    Item,
    MetaState,
    SetAside,
    Stop,
    SyncPoint,
    WriteQueue,
)

__all__ = ["ALARM_STATUS", "EVICT_FRACTION", "EVICT_MIN_ROWS", "Eviction", "Outbox", "OutboxCounters", "OutboxReader",
           "Row"]

log = logging.getLogger(__name__)

MAX_HELD = 50_000  # readings kept in memory while the disk refuses commits; older ones are dropped
RETRY_MIN, RETRY_MAX = 0.1, 2.0
# acknowledgements are committed within this, not a whole commit_interval: each one lost in
# a crash is a reading sent again (a duplicate). A commit of acknowledgements alone skips the
# fsync (synchronous=NORMAL): a process crash keeps it all the same, and a power cut can only
# undo acknowledgements (duplicates, never a loss), so the SD card pays nothing for it.
ACK_COMMIT = 0.03
ALARM_HISTORY = 10_000  # alarm events kept in alarm_events for `edge-agent alarms`


class Outbox(LiveChanges, Recovery):
    """Store-and-forward buffer for readings, shared by every uplink."""

    def __init__(
        self,
        path: str | Path,
        uplinks: Iterable[str] = (),
        *,
        max_bytes: int = 256 * 1024 * 1024,
        commit_interval: float = 0.25,
        day_of: DayOf | None = None,
    ) -> None:
        self.path = Path(path)
        self.day_of = day_of
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self.counters = OutboxCounters()
        self.generation = 0
        self._conn, reset = open_database(self.path)
        self._seqs = SeqReserve(self.path.with_name(self.path.name + ".seq"))
        self.page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        self.space = SpaceGuard(self.path, max_bytes, self.page_size)
        self.space.configure(self._conn)
        self.wal_allowance = self.space.wal_allowance
        self._chunk = max(100, min(10_000, self.wal_allowance // 256))
        self.uplink_bits = register_uplinks(self._conn, list(uplinks))
        self._mask = 0
        for bit in self.uplink_bits.values():
            self._mask |= 1 << bit
        last = self._sequence()
        floor = max(self._seqs.limit, reset.last_seq or 0) if reset else 0
        if last == 0 and self._seqs.limit and not reset:
            floor = self._seqs.limit
            log.warning("buffer: fresh database beside an old seq file; seq continues at %d (never reused)",
                        floor + 1)
        self._next_seq = max(last, floor) + 1
        self.last_seq = self._next_seq - 1
        if reset is not None:
            self._record_reset(reset)
        self._queue = WriteQueue()
        self._listeners: list[Callable[[int], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._synced = threading.Condition()
        self._sync_token = 0
        self._done_token = 0
        # what the writer holds between queue and disk
        self._held: list[Reading] = []
        self._readings_due = 0.0  # monotonic time the held readings' group commit is due
        self._acks: dict[int, list[int]] = {}
        self._eacks: dict[int, list[int]] = {}
        self._asides: list[SetAside] = []  # readings an uplink will never deliver
        self._meta: dict[str, str] = {}  # meta facts committed with the readings queued before them
        self._changes: list[UplinkChange] = []  # changes of uplinks while running (reload)
        self._clock_fix: ClockFix | None = None  # readings of its boot taken from the queue get UTC
        self._fixes: list[ClockFix] = []
        self._sync_level = "FULL"  # the write connection's synchronous setting (database.connect)
        self._tokens: list[int] = []
        self._unrecorded_drops = 0
        self._trouble = ""
        self._corrupt = ""
        self._aside: ResetInfo | None = None

    # -- set-up ---------------------------------------------------------------------
    def _sequence(self) -> int:
        return committed_seq(self._conn)

    # -- the public, thread-safe side ---------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="outbox-writer", daemon=True)
        self._thread.start()

    def add_listener(self, callback: Callable[[int], None]) -> None:
        """``callback(last_seq)`` runs in the writer thread after each commit that adds readings
        or eviction records."""
        self._listeners = [*self._listeners, callback]  # a new list: the writer may be iterating

    def remove_listener(self, callback: Callable[[int], None]) -> None:
        """Stop calling ``callback`` (an uplink that a reload removed)."""
        self._listeners = [cb for cb in self._listeners if cb is not callback]

    def submit(self, reading: Reading) -> None:
        """Queue a reading for the next group commit (thread-safe, never blocks)."""
        self._queue.put_reading(reading)

    def submit_event(self, reading: Reading, key: str, state: str) -> None:
        """Queue an event reading (``status`` names its kind, e.g. :data:`ALARM_STATUS`) and the
        state it leads to, kept under meta ``key``: both are committed in the same transaction,
        so after a crash the state never runs ahead of the events nor behind them."""
        self._queue.put(reading)
        self._queue.put(MetaState(key, state))

    def ack(self, uplink: str, seqs: list[int]) -> None:
        """Record that ``uplink`` has a success acknowledgement for ``seqs`` (an uplink just
        removed by :meth:`change_uplinks` has nothing left to acknowledge: ignored)."""
        bit = self.uplink_bits.get(uplink)
        if bit is not None:
            self._queue.put(Acked(bit, seqs))

    def ack_evictions(self, uplink: str, ids: list[int]) -> None:
        """Record that ``uplink`` has announced the evictions ``ids``."""
        bit = self.uplink_bits.get(uplink)
        if bit is not None:
            self._queue.put(EvictionsAnnounced(bit, ids))

    def set_aside(self, uplink: str, seq: int, why: str) -> None:
        """``uplink`` will never deliver reading ``seq`` (e.g. too large for its broker): it
        leaves that uplink's backlog, recorded as a one-reading loss the uplink announces."""
        bit = self.uplink_bits.get(uplink)
        if bit is not None:
            self._queue.put(SetAside(bit, uplink, seq, why))

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is committed. False on timeout
        (the disk refuses commits)."""
        if self._thread is None or not self._thread.is_alive():
            self._gather(block=False)
            return self._flush(force=True)
        with self._synced:
            self._sync_token += 1
            token = self._sync_token
            self._queue.put(SyncPoint(token))
            return self._synced.wait_for(lambda: self._done_token >= token, timeout)

    def close(self) -> None:
        self._stop.set()
        self._queue.put(Stop())
        if self._thread is not None:
            self._thread.join(timeout=10)
        else:
            self._gather(block=False)
            self._flush(force=True)
        if self._held:
            log.error("buffer: closing with %d readings that could not be committed (%s)",
                      len(self._held), self._trouble or "disk trouble")
        self._conn.close()

    def reader(self) -> OutboxReader:
        """A read connection for one thread (uplinks, technician commands)."""
        return OutboxReader(self.path, lambda: self.generation, self._report_corrupt)

    def _report_corrupt(self, generation: int, error: str) -> None:
        """A reader found the file corrupt: the writer moves it aside (once per file)."""
        self._queue.put(CorruptFound(generation, error))

    def used_bytes(self) -> int:
        """Bytes on disk: database file, WAL and reserve file."""
        return self.space.used_bytes(self._conn)

    # -- the writer thread ------------------------------------------------------------
    def _writer(self) -> None:
        retry = RETRY_MIN
        ok = True
        while True:
            try:
                # idle, the writer sleeps until something is queued (or the held readings' group
                # commit is due); only a refused commit retries on a timer
                wait = None if ok else retry
                if ok and self._held:
                    wait = max(0.0, self._readings_due - time.monotonic())
                stop = self._gather(block=True, wait=wait)
                ok = self._flush(force=stop)
            except Exception:
                log.exception("buffer writer failed; retrying")
                stop, ok = self._stop.is_set(), False
            if stop:
                return
            retry = RETRY_MIN if ok else min(RETRY_MAX, retry * 2)

    def _gather(self, block: bool, wait: float | None = None) -> bool:
        """Move queued items into the writer's hands, for up to one commit interval after the
        first (``block``: waiting up to ``wait`` seconds for one). True when asked to stop."""
        q = self._queue
        items = q.take()
        if not items and block:
            q.wait(wait)
            items = q.take()
        if not items:
            return self._stop.is_set()
        now = time.monotonic()
        stop, synced, acked = self._take_all(items)
        deadline = self._readings_due if self._held else now + self.commit_interval
        if acked:  # an acknowledgement not committed is a duplicate after a crash
            deadline = min(deadline, now + ACK_COMMIT)
        q.armed = True  # readings queued from now on wait for the deadline without waking us
        try:
            while not (stop or synced) and (left := deadline - time.monotonic()) > 0:
                q.wait(left)
                more_stop, synced, acked = self._take_all(q.take())
                stop = stop or more_stop
                if acked:
                    deadline = min(deadline, time.monotonic() + ACK_COMMIT)
        finally:
            q.armed = False
        stop = self._take_all(q.take())[0] or stop
        if self._trouble and len(self._held) > MAX_HELD:  # only while the disk refuses commits
            drop = len(self._held) - MAX_HELD
            del self._held[:drop]
            self.counters.dropped += drop
            self._unrecorded_drops += drop
            log.error("buffer: DROPPED %d readings never committed (%s); %d held in memory",
                      drop, self._trouble or "disk trouble", len(self._held))
        return stop

    def _take_all(self, items: list[Item]) -> tuple[bool, bool, bool]:
        """Hold ``items``: (a stop among them, a sync point among them, an acknowledgement among them)."""
        stop = synced = acked = False
        take = self._take
        for item in items:
            if take(item):
                stop = True
            elif type(item) is not Reading:
                synced = synced or type(item) is SyncPoint
                acked = acked or isinstance(item, ACK_ITEMS)
        return stop, synced, acked

    def _take(self, item: Item) -> bool:
        """Hold one queued item for the next commit. True for :class:`Stop`."""
        if type(item) is Reading:  # the hot path: one per poll
            if item.clock is not None and self._clock_fix is not None and item.clock == self._clock_fix.boot_id:
                fix = self._clock_fix  # stamped before the clock was good, queued after: UTC now
                item = replace(item, ts=max(item.ts + fix.offset_ms, fix.floor_ms), clock=None)
            if not self._held:  # the group commit of these readings is due a commit interval from now
                self._readings_due = time.monotonic() + self.commit_interval
            self._held.append(item)
            return False
        match item:
            case Acked(bit, seqs):
                self._acks.setdefault(bit, []).extend(seqs)
            case EvictionsAnnounced(bit, ids):
                self._eacks.setdefault(bit, []).extend(ids)
            case SetAside():
                self._asides.append(item)
            case MetaState(key, state):
                self._meta[key] = state
            case SyncPoint(token):
                self._tokens.append(token)
            case CorruptFound(generation, error) if generation == self.generation:
                self._corrupt = f"found by a reader: {error}"
            case UplinkChange():
                self._changes.append(item)
            case ClockFix():
                self._clock_fix = item
                self._fixes.append(item)
            case HoldFromNow():
                self._clock_fix = None
            case Stop():
                return True
        return False

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
        while (self._corrupt or (self._held and readings) or self._acks or self._eacks or self._asides
               or self._meta):
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
        # acknowledgements alone need no fsync (see ACK_COMMIT); readings always get one
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
        for bit, seqs in self._acks.items():
            self._apply_acks(bit, seqs)
        for bit, ids in self._eacks.items():
            c.executemany("UPDATE evictions SET pending = pending & ? WHERE id = ?",
                          [(~(1 << bit), i) for i in ids])
        at = int(time.time() * 1000)
        for a in self._asides:  # leaves the uplink's backlog, announced as a loss
            c.execute("DELETE FROM readings WHERE seq = ? AND (pending & ?) = 0", (a.seq, ~(1 << a.bit)))
            c.execute("UPDATE readings SET pending = pending & ? WHERE seq = ?", (~(1 << a.bit), a.seq))
            c.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending, uplink)"
                      " VALUES (?, ?, ?, 1, ?, ?, ?)", (at, a.seq, a.seq, a.why, 1 << a.bit, a.uplink))
        if self._unrecorded_drops:
            c.execute("INSERT INTO counters(name, value) VALUES ('dropped', ?)"
                      " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (self._unrecorded_drops,))
        c.execute("COMMIT")
        self._unrecorded_drops = 0
        if meta:
            self._meta = {}
        self._acks.clear()
        self._eacks.clear()
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

    def _apply_acks(self, bit: int, seqs: list[int]) -> None:
        """Clear ``bit`` on acknowledged readings (inside the commit's transaction); with
        ``day_of``, count each reading whose bit this clears as delivered by that uplink."""
        names = {b: n for n, b in self.uplink_bits.items()}
        apply_acks(self._conn, bit, to_ranges(seqs), names.get(bit) if self.day_of else None, self.day_of)

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
