"""Polling: each device at its interval, failures become readings, dead slaves back off.

A device that fails ``OFFLINE_AFTER`` consecutive polls goes offline: until its back-off
expires the bus is not asked (each scheduled poll yields an ``offline`` reading without
touching the bus), then one real poll is tried; the back-off doubles up to
``BACKOFF_MAX``. So a dead slave costs the others on its bus at most one timeout per
back-off period. Every change of state is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from drivers.errors import DeviceOffline, DriverError
from drivers.reading import Reading, Value

log = logging.getLogger(__name__)

OFFLINE_AFTER = 3
BACKOFF_MAX = 60.0


class DevicePoller:
    def __init__(self, device_id: str, read: Callable[[], Awaitable[dict[str, Value]]],
                 interval: float, submit: Callable[[Reading], None],
                 backoff_max: float = BACKOFF_MAX) -> None:
        self.device_id = device_id
        self.read = read
        self.interval = interval
        self.submit = submit
        self.backoff_min = max(2 * interval, 2.0)
        self.backoff_max = max(backoff_max, self.backoff_min)
        self.failures = 0
        self.offline = False
        self.backoff = self.backoff_min
        self.retry_at = 0.0
        self.last_status = "ok"
        self.polls = 0

    async def poll_once(self) -> Reading:
        ts = int(time.time() * 1000)
        now = time.monotonic()
        if self.offline and now < self.retry_at:
            return Reading(self.device_id, ts, {}, DeviceOffline.status)
        try:
            values = await self.read()
        except DriverError as exc:
            self._failed(exc, now)
            return Reading(self.device_id, ts, {}, exc.status)
        self.polls += 1
        if self.offline or self.last_status != "ok":
            log.info("device %s: back online", self.device_id)
        self.offline = False
        self.failures = 0
        self.backoff = self.backoff_min
        self.last_status = "ok"
        return Reading(self.device_id, ts, values, "ok")

    def _failed(self, exc: DriverError, now: float) -> None:
        self.polls += 1
        self.failures += 1
        if exc.status != self.last_status:
            log.warning("device %s: %s (%s)", self.device_id, exc.status, exc)
        self.last_status = exc.status
        if self.offline:
            self.backoff = min(self.backoff * 2, self.backoff_max)
            self.retry_at = now + self.backoff
            log.debug("device %s: still offline, next try in %.0fs", self.device_id, self.backoff)
        elif self.failures >= OFFLINE_AFTER:
            self.offline = True
            self.retry_at = now + self.backoff
            log.warning("device %s: offline after %d failed polls; retrying every %.0fs..%.0fs",
                        self.device_id, self.failures, self.backoff_min, self.backoff_max)

    async def run(self) -> None:
        """Poll at a fixed rate; a late poll does not shift the schedule, missed slots are skipped."""
        next_at = time.monotonic()
        while True:
            reading = await self.poll_once()
            self.submit(reading)
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:
                skipped = int((now - next_at) // self.interval) + 1
                next_at += skipped * self.interval
            await asyncio.sleep(next_at - now)
