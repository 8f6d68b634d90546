"""The health topic: today's completeness, published retained every ``health.interval``,
and the finished day's final counts just after local midnight — or, when the agent was not
running then, when it starts (yesterday's figures, if it has any, before today's)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

from buffer.database import connect_readonly

from .completeness import day_report
from .status import StatusSource

log = logging.getLogger(__name__)

AFTER_MIDNIGHT = 1.0  # seconds: the day's last readings are committed by then


class HealthPublisher:
    def __init__(self, source: StatusSource, interval: float, publish: Callable[[str], None],
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.source = source
        self.interval = interval
        self.publish = publish
        self.clock = clock  # the wall clock and the sleep: a test runs through midnight with fakes
        self.sleep = sleep

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def payload(self, day: date, now_ms: int) -> dict[str, Any]:
        src = self.source
        conn = connect_readonly(src.outbox.path)
        try:
            report = day_report(conn, src.days, day, src.intervals(), src.carriage(), now_ms)
        finally:
            conn.close()
        return {"gateway": src.gateway, **report}

    async def publish_day(self, day: date, only_with_counts: bool = False) -> None:
        now_ms = self._now_ms()
        try:
            body = await asyncio.to_thread(self.payload, day, now_ms)
        except Exception as exc:  # a health message missed is not the daemon's end
            log.warning("health: cannot read the completeness counts (%s); next try in %.0fs", exc, self.interval)
            return
        if only_with_counts and not any(d["received"] for d in body["devices"].values()):
            return
        self.publish(json.dumps(body, separators=(",", ":")))

    async def run(self) -> None:
        days = self.source.days
        current = days.today(self._now_ms())
        # the end of yesterday may have passed while the agent was stopped: its final figures now
        await self.publish_day(current - timedelta(days=1), only_with_counts=True)
        while True:
            now_ms = self._now_ms()
            today = days.today(now_ms)
            if today != current:
                await self.publish_day(current)  # final: the day is over
                current = today
            await self.publish_day(today)
            _, end = days.bounds(today)
            to_midnight = (end - self._now_ms()) / 1000 + AFTER_MIDNIGHT
            await self.sleep(max(0.1, min(self.interval, to_midnight)))
