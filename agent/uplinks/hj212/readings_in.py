"""Readings in, for the HJ 212 uplink: the outbox's readings folded into its store.

Every reading this uplink carries is folded into the minute/hour/day aggregates of its
store, then acknowledged to the outbox, whether or not the platform is reachable (the
worker in :mod:`.worker` sends what closes). The acknowledgement does not count a reading
as delivered: that is counted when the platform answers the minute packet it went into.
Readings the buffer evicted before they were folded are said once; readings held for a good
clock and given UTC times later are folded when they are released. A closed period becomes
a stored packet. A mixin of :class:`.worker.Hj212UplinkWorker`: it shares the worker's state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from buffer.completeness import VALID_STATUS
from buffer.outbox import ALARM_STATUS, Outbox, OutboxReader
from buffer.reader import Row

from .aggregate import Carried, Sample, local, period_start, samples, spans
from .config import Hj212Uplink
from .requests import Settings
from .store import Hj212Store

if TYPE_CHECKING:
    from .worker import Hj212Stats

log = logging.getLogger("agent.uplinks.hj212.worker")  # the uplink's log, wherever its code lives

FETCH = 1000  # readings folded per transaction


class ReadingsIn:
    """The readings side of the HJ 212 uplink's thread."""

    name: str
    cfg: Hj212Uplink
    outbox: Outbox
    bit: int
    tz: ZoneInfo
    poll_intervals: dict[str, float]
    store: Hj212Store
    settings: Settings
    stats: Hj212Stats
    _by_device: dict[str, list[Carried]]
    _latest: dict[str, tuple[int, list[Sample]]]
    _cursor: int
    _releases_seen: int
    _evictions_seen: int
    _new_readings: bool
    _next_close: float | None

    def _evictions(self, reader: OutboxReader) -> None:
        """Readings the buffer evicted (full) before this uplink folded them: their periods
        fall short (D by the 75 % rule); said once per eviction, then marked announced."""
        if self.outbox.counters.eviction_records == self._evictions_seen:
            return
        self._evictions_seen = self.outbox.counters.eviction_records
        self.outbox.sync()
        events = reader.evictions(self.bit)
        for ev in events:
            log.warning("hj212 %s: the buffer dropped %d readings (seq %d..%d: %s) before this uplink took them;"
                        " their periods are short of readings", self.name, ev.count, ev.first_seq, ev.last_seq,
                        ev.reason)
        if events:
            self.outbox.ack_evictions(self.name, [ev.id for ev in events])

    def _ingest(self, reader: OutboxReader) -> None:
        self._evictions(reader)
        span_by_cn = spans(self.settings.min_interval, self.cfg.hourly, self.cfg.daily)
        if self.outbox.counters.clock_releases != self._releases_seen:
            self._releases_seen = self.outbox.counters.clock_releases
            self._ingest_released(reader, span_by_cn)
        for _ in range(10):
            rows = reader.fetch(self.bit, self._cursor, None, FETCH)
            if not rows:
                return
            self._fold(rows, self.store.folded_seq, span_by_cn)
            self._cursor = rows[-1].seq
            if len(rows) < FETCH:
                return
        self._new_readings = True  # more than this round takes: the next tick goes on

    def _ingest_released(self, reader: OutboxReader, span_by_cn: dict[str, float]) -> None:
        """Readings held for a good clock got their UTC time, maybe after later readings were
        taken (seq past them): those still waiting below the cursor were never folded."""
        self.outbox.sync()  # the acknowledgements so far are committed: what still waits was never taken
        after = 0
        while after < self._cursor:
            rows = reader.fetch(self.bit, after, self._cursor, FETCH)
            if not rows:
                return
            self._fold(rows, 0, span_by_cn)
            after = rows[-1].seq

    def _fold(self, rows: list[Row], folded: int, span_by_cn: dict[str, float]) -> None:
        """Fold the readings past ``folded`` (the store's: counted before a restart) and take them all."""
        todo = []
        for r in rows:
            points = self._by_device.get(r.device)
            if not points or r.status == ALARM_STATUS:  # an alarm event is no poll
                continue
            reading = samples(r, points)
            if r.ts >= self._latest.get(r.device, (0, []))[0]:
                self._latest[r.device] = (r.ts, reading)
            if r.seq > folded:
                starts = {cn: period_start(r.ts / 1000, span, self.tz) for cn, span in span_by_cn.items()}
                todo.append((r.device, reading, starts, r.status == VALID_STATUS))
        self.stats.late_readings += self.store.fold(max(self.store.folded_seq, rows[-1].seq), todo, span_by_cn)
        # delivered is counted when the platform answers the minute packet (worker), not here
        self.outbox.ack(self.name, [r.seq for r in rows], counted=False)
        self._next_close = self.store.next_end(self._grace())

    def _grace(self) -> float:
        """How long after a period's end its last readings may still arrive."""
        return min(3.0, self.settings.min_interval / 4)

    def _close_periods(self, now: float) -> None:
        made = self.store.close_due(now, self._grace(), self.poll_intervals)
        self._next_close = self.store.next_end(self._grace())
        for packet in made:
            log.debug("hj212 %s: CN=%s period %s closed", self.name, packet.cn, local(packet.start, self.tz))
        if made:
            lost = self.store.prune(int(now) - self.cfg.keep_days * 86400)
            if lost:
                log.error("hj212 %s: %d stored packets older than keep_days (%d) were never answered; dropped",
                          self.name, lost, self.cfg.keep_days)
            self.stats.waiting = self.store.count_unanswered()
