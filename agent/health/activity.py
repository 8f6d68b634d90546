"""Polls and errors per device over the last hour, in one-minute buckets, and since start."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from drivers.errors import DeviceOffline
from drivers.reading import Reading

GOOD = frozenset({"ok", "partial"})
WINDOW = 60  # one-minute buckets: the last hour


@dataclass(slots=True)
class DeviceActivity:
    """A poll is a reading the bus was asked for (the ``offline`` readings of a backed-off
    device are not polls); an error is a poll that got no value at all."""

    polls_total: int = 0
    errors_total: int = 0
    _buckets: deque[list[int]] = field(default_factory=deque)  # [minute, polls, errors], oldest first

    def note(self, reading: Reading, now: float | None = None) -> None:
        if reading.status == DeviceOffline.status:
            return
        minute = int((time.time() if now is None else now) // 60)
        if not self._buckets or self._buckets[-1][0] != minute:
            self._buckets.append([minute, 0, 0])
            while self._buckets and self._buckets[0][0] <= minute - WINDOW:
                self._buckets.popleft()
        failed = reading.status not in GOOD
        self._buckets[-1][1] += 1
        self._buckets[-1][2] += failed
        self.polls_total += 1
        self.errors_total += failed

    def last_hour(self, now: float | None = None) -> tuple[int, int]:
        """(polls, errors) in the last 60 minutes (the current minute included)."""
        since = int((time.time() if now is None else now) // 60) - WINDOW
        polls = errors = 0
        for minute, p, e in self._buckets:
            if minute > since:
                polls += p
                errors += e
        return polls, errors
