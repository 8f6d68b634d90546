"""What changes in a running buffer besides readings and acknowledgements: the set of uplinks
(a reload) and the clock (readings held until it is known good, then given UTC times).

Both go through the writer's queue, so they take effect after every reading queued before
them is committed. A mixin of :class:`buffer.outbox.Outbox`: it shares the writer's state.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .clockfix import ClockFix, release_held
from .completeness import DayOf
from .recovery import OutboxCounters
from .uplinkbits import UplinkChange
from .writequeue import HoldFromNow, WriteQueue


class LiveChanges:
    _queue: WriteQueue
    _thread: threading.Thread | None
    _conn: sqlite3.Connection
    _fixes: list[ClockFix]
    _listeners: list[Callable[[int], None]]
    _mask: int
    uplink_bits: dict[str, int]
    counters: OutboxCounters
    day_of: DayOf | None
    last_seq: int

    if TYPE_CHECKING:  # the writer's, for the type checker only: a stub here would hide them at run time
        def _gather(self, block: bool, wait: float | None = None) -> bool: ...
        def _flush(self, force: bool = False) -> bool: ...
        def _note_trouble(self, exc: BaseException) -> None: ...

    def release_held(self, fix: ClockFix) -> None:
        """The clock is good: readings held for it get UTC times (see :mod:`buffer.clockfix`)."""
        self._queue.put(fix)

    def hold_from_now(self) -> None:
        """The clock is no longer good: readings stamped from now on are held until the next fix."""
        self._queue.put(HoldFromNow())

    def change_uplinks(self, names: list[str], timeout: float = 10.0) -> dict[str, int]:
        """While running: make ``names`` the uplinks. A new one gets its bit (readings committed
        from now on wait for it too). If an uplink left out still has readings waiting, nothing
        changes and those counts are returned ({name: readings}); the check and the change are
        one step of the writer, after every reading queued before this call is committed."""
        change = UplinkChange(list(names))
        if self._thread is None or not self._thread.is_alive():
            self._gather(block=False)
            self._flush(force=True)
            self._apply_uplink_change(change)
        else:
            self._queue.put(change)
            if not change.done.wait(timeout):
                raise TimeoutError("the buffer did not take the change of uplinks in time (disk trouble?)")
        if change.error is not None:
            raise change.error
        return change.stranded

    def _apply_uplink_change(self, change: UplinkChange) -> None:
        bits = change.apply(self._conn, self.uplink_bits)
        if bits is not None:
            mask = 0
            for bit in bits.values():
                mask |= 1 << bit
            self.uplink_bits, self._mask = bits, mask

    def _release_held(self) -> bool:
        """After the readings queued before them are committed: apply clock fixes. False on disk trouble."""
        while self._fixes:
            try:
                release_held(self._conn, self._fixes[0], self.day_of)
            except (sqlite3.Error, OSError) as exc:
                self._note_trouble(exc)
                return False
            self._fixes.pop(0)
            self.counters.clock_releases += 1
            for cb in self._listeners:
                cb(self.last_seq)
        return True
