"""One session's delivery state: what is ready to publish, and where reading the buffer stands.

Readings committed before the session began are the backlog (sent oldest first, at most
``backlog_rate`` readings a second when set); readings committed since are live. Four
ready queues are handed to paho in this order: alarm events, other messages (status,
metadata, eviction notices, the alarm set), live readings, backlog readings; the backlog
leaves two of the in-flight slots to live readings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .messages import Message


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(rate, burst)
        self.tokens = float(burst)
        self._last = now

    def refill(self, now: float) -> None:
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def has(self, need: float) -> bool:
        return not self.rate or self.tokens >= need

    def allowance(self, most: int) -> int:
        """How many may go now, at most ``most`` (and at least one)."""
        return most if not self.rate else max(1, min(most, int(self.tokens)))

    def take(self, n: int) -> None:
        self.tokens -= n

    def due(self, need: float, now: float) -> float | None:
        """When ``need`` tokens will be there (monotonic seconds); None when unlimited."""
        if not self.rate:
            return None
        return now + max(0.0, need - self.tokens) / self.rate


class SessionQueues:
    """Cursors into the buffer and the ready queues of one session."""

    def __init__(self, last_seq: int, announcements: Iterable[Message], bucket: TokenBucket) -> None:
        self.live_floor = self.live_cursor = last_seq  # readings up to live_floor are backlog
        self.backlog_cursor = 0
        self.skip: set[int] = set()  # in flight when a rescan began: not to be read again in that pass
        self.alarm: deque[Message] = deque()
        self.other: deque[Message] = deque(announcements)
        self.live: deque[Message] = deque()
        self.backlog: deque[Message] = deque()
        self.bucket = bucket
        self.evictions_seen = -1
        self.alarms_shown = -1
        self.releases_seen = 0  # the buffer's count of clock releases when last read

    def rescan(self, inflight: Iterable[Message]) -> None:
        """Read the buffer from the start again (a refused topic is due for a probe, or accepted
        again); what is in flight or queued is not read twice."""
        self.skip = {s for q in (inflight, self.live, self.backlog) for m in q for s in m.seqs}
        self.live_floor = self.live_cursor
        self.backlog_cursor = 0

    @property
    def backlog_left(self) -> int:
        return self.live_floor - self.backlog_cursor

    def backlog_ready(self, batch: int) -> bool:
        """Fetch more backlog now? Waits for a whole batch of tokens: catch-up goes in big messages."""
        return not self.backlog and self.backlog_left > 0 and self.bucket.has(min(batch, self.backlog_left))

    def backlog_due(self, batch: int, now: float) -> float | None:
        """When rate-limited backlog may go next, or None."""
        if self.backlog or self.backlog_left <= 0:
            return None
        return self.bucket.due(min(batch, self.backlog_left), now)

    def in_order(self, window: int) -> list[tuple[deque[Message], int]]:
        """(queue, in-flight slots it may fill): alarms, other, live, then backlog."""
        return [(self.alarm, max(1, window)), (self.other, window), (self.live, window),
                (self.backlog, max(1, window - 2))]

    def eviction_ids(self, inflight: Iterable[Message]) -> set[int]:
        return {m.eviction_id for q in (inflight, self.other) for m in q if m.kind == "eviction"}
