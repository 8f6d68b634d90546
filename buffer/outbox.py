"""The SQLite outbox: every reading stays on disk until each uplink that carries it has
a success acknowledgement. The only queue between polling and publishing.

One writer thread owns the write connection: it assigns ``seq`` and inserts readings in
group commits at most ``commit_interval`` apart (WAL, ``synchronous=FULL``: a process
crash loses nothing committed, a power cut at most the last interval). Acknowledgements
are applied as range statements within ``ACK_COMMIT`` of arriving, alone without an
fsync (an acknowledgement lost is a duplicate, never a loss). Uplinks read through
their own connections (:meth:`Outbox.reader`).

This module is the public side and the writer's loop, which gathers what is queued; the
transactions themselves are :mod:`buffer.commit`, what a refused commit leads to
:mod:`buffer.recovery`, changes of uplinks and clock while running :mod:`buffer.live_changes`
(mixins of :class:`Outbox`, sharing the writer's state).

The store is capped at ``max_bytes`` (WAL included) and at what the disk allows
(:mod:`buffer.space`). When full, the oldest readings are evicted in chunks, counted, and
the exact seq ranges each uplink lost are recorded for announcement (:mod:`buffer.eviction`).
Given ``day_of``, the same transactions count readings polled and delivered per uplink per
local day (:mod:`buffer.completeness`).
When the disk cannot take a commit at all, readings wait in memory (bounded, counted when
dropped) and the writer retries: it keeps running and never corrupts the file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from drivers.reading import Reading

from .clockfix import ClockFix
from .commit import GroupCommit
from .completeness import DayOf
from .database import ResetInfo, open_database
from .eviction import EVICT_FRACTION, EVICT_MIN_ROWS
from .live_changes import LiveChanges
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
    Delivered,
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


class Outbox(GroupCommit, LiveChanges, Recovery):
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
        self._acks: dict[tuple[int, bool], list[int]] = {}  # (uplink bit, counted) → seqs
        self._delivered: list[Delivered] = []  # deliveries an uplink counted itself
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

    def ack(self, uplink: str, seqs: list[int], counted: bool = True) -> None:
        """Record that ``uplink`` has a success acknowledgement for ``seqs`` (an uplink just
        removed by :meth:`change_uplinks` has nothing left to acknowledge: ignored). With
        ``counted`` False the readings leave its backlog without counting as delivered: the
        uplink counts its deliveries itself (:meth:`count_delivered`)."""
        bit = self.uplink_bits.get(uplink)
        if bit is not None:
            self._queue.put_ack(Acked(bit, seqs, counted), ACK_COMMIT)

    def count_delivered(self, uplink: str, rows: list[tuple[str, int, int, int]]) -> None:
        """Count deliveries ``uplink`` has made: ``(device, ts ms, readings, valid)`` rows, each
        for the local day of its ``ts`` (the completeness counts; see buffer/completeness.py)."""
        if rows:
            self._queue.put_ack(Delivered(uplink, rows), ACK_COMMIT)

    def ack_evictions(self, uplink: str, ids: list[int]) -> None:
        """Record that ``uplink`` has announced the evictions ``ids``."""
        bit = self.uplink_bits.get(uplink)
        if bit is not None:
            self._queue.put_ack(EvictionsAnnounced(bit, ids), ACK_COMMIT)

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
        q.deadline = deadline  # before armed: a producer that sees armed reads this deadline
        q.armed = True  # readings queued from now on wait for the deadline without waking us
        try:
            while not (stop or synced) and (left := deadline - time.monotonic()) > 0:
                q.wait(left)
                more_stop, synced, acked = self._take_all(q.take())
                stop = stop or more_stop
                if acked:
                    deadline = q.deadline = min(deadline, time.monotonic() + ACK_COMMIT)
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
            case Acked(bit, seqs, counted):
                self._acks.setdefault((bit, counted), []).extend(seqs)
            case Delivered():
                self._delivered.append(item)
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
