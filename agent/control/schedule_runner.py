"""Running the lighting schedules in the daemon, with no uplink needed.

At start each scheduled device gets the values in force now (a gateway back from a power
cut at 02:00 switches the lamps on at the night's dimming). Then each step is applied when
it falls due. A platform command on a scheduled device holds its values until the next
step (or for the command's ``hold``); steps due meanwhile are not applied to it, and when
the hold ends the device gets the values in force then. A step whose write failed is tried
again every ``RETRY_SECONDS`` until it succeeds or another step replaces it. A reload that
adds or changes a schedule applies what that schedule has in force then (:meth:`ScheduleRunner.replace`).

Time comes from the engines' clock, so tests drive :meth:`ScheduleRunner.tick` on a fake
clock; :meth:`ScheduleRunner.run` only sleeps between ticks (never longer than
``MAX_SLEEP``, so a clock set forward by NTP is noticed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from .config import SetValue
from .schedule import ScheduleEngine

log = logging.getLogger(__name__)
RETRY_SECONDS = 30.0
MAX_SLEEP = 30.0
START = "at start"
RELOADED = "reloaded"
OVERRIDE_ENDED = "override ended"

# (schedule, device, values, what: step times or START/RELOADED/OVERRIDE_ENDED) → an outcome with .status
Apply = Callable[[str, str, dict[str, SetValue], str], Awaitable[Any]]


class ScheduleRunner:
    def __init__(self, engines: dict[str, ScheduleEngine], apply: Apply) -> None:
        self.engines = engines
        self.apply = apply
        self.last: datetime | None = None
        # (schedule, device) → (values, what, when to try again): a step whose write failed
        self.retry: dict[tuple[str, str], tuple[dict[str, SetValue], str, datetime]] = {}
        self._fresh: set[str] = set()  # schedules a reload added or changed, applied at the next turn
        self._wake = asyncio.Event()

    def _now(self) -> datetime | None:
        for e in self.engines.values():
            return e.now()
        return None

    async def start(self) -> None:
        """Apply what should be in force now on every scheduled device."""
        await self._in_force(list(self.engines), START)
        self.last = self._now()

    async def _in_force(self, names: list[str], what: str) -> None:
        """Apply what is in force now on the devices of these schedules, except those a
        platform command holds (the hold's end applies it)."""
        for name in names:
            engine = self.engines.get(name)
            if engine is None:
                continue
            now = engine.now()
            for device in engine.schedule.devices:
                values = engine.wanted(device, now)
                if values and device not in engine.overrides:
                    await self._apply(engine, device, values, what, now)

    def replace(self, engines: dict[str, ScheduleEngine]) -> None:
        """A reload's schedules. One whose settings did not change keeps its engine and goes on
        as before. A new or changed one applies what is in force now on its devices at the next
        turn, as at start; a platform command's hold on a device carries over. A removed one
        stops: its devices keep their last values."""
        held = {d: ov for e in self.engines.values() for d, ov in e.overrides.items()}
        kept = {n: e for n, e in self.engines.items()
                if n in engines and (e.schedule, e.timezone) == (engines[n].schedule, engines[n].timezone)}
        for name, engine in engines.items():
            if name not in kept:
                engine.overrides.update({d: held[d] for d in engine.schedule.devices if d in held})
                self._fresh.add(name)
        self.engines = {n: kept.get(n, e) for n, e in engines.items()}
        self.retry = {k: v for k, v in self.retry.items() if k[0] in kept}
        self._wake.set()

    async def tick(self, fresh: Collection[str] = ()) -> None:
        """Apply every step that fell due since the last tick, ended overrides and retries.
        The ``fresh`` schedules have just had what is in force now applied: no steps due."""
        now = self._now()
        if now is None:
            return
        last = self.last or now
        for engine in list(self.engines.values()):
            due = engine.between(last, now) if engine.name not in fresh else []
            for device in engine.schedule.devices:
                if self.engines.get(engine.name) is not engine:  # a reload replaced it meanwhile
                    break
                await self._device_tick(engine, device, due, now)
        self.last = now

    async def _device_tick(self, engine: ScheduleEngine, device: str, due: list[Any], now: datetime) -> None:
        held = device in engine.overrides
        override = engine.active_override(device, now)
        if override is not None:
            for occ in due:
                log.info("schedule %s: step %s not applied to %s: a platform command holds it until %s",
                         engine.name, occ.step.at, device, override.until.isoformat(timespec="seconds"))
            return
        if held:
            await self._apply(engine, device, engine.wanted(device, now), OVERRIDE_ENDED, now)
            return
        if due:
            values: dict[str, SetValue] = {}
            for occ in due:
                values.update(occ.values)
            await self._apply(engine, device, values, ", ".join(o.step.at for o in due), now)
            return
        pending = self.retry.get((engine.name, device))
        if pending is not None and now >= pending[2]:
            await self._apply(engine, device, pending[0], pending[1], now)

    async def _apply(self, engine: ScheduleEngine, device: str, values: dict[str, SetValue], what: str,
                     now: datetime) -> None:
        key = (engine.name, device)
        self.retry.pop(key, None)
        if not values:
            return
        out = await self.apply(engine.name, device, values, what)
        # a reload during the write may have replaced the schedule: its retry would never end
        if getattr(out, "status", "ok") == "failed" and self.engines.get(engine.name) is engine:
            self.retry[key] = (values, what, now + timedelta(seconds=RETRY_SECONDS))

    def override(self, device: str, values: dict[str, SetValue], hold: float | None) -> None:
        """A platform command wrote ``values``: hold them against every schedule of the device."""
        for engine in self.engines.values():
            if device in engine.schedule.devices:
                ov = engine.override(device, values, duration=hold)
                self.retry.pop((engine.name, device), None)
                log.info("schedule %s: %s held by a platform command until %s", engine.name, device,
                         ov.until.isoformat(timespec="seconds"))

    def seconds_to_next(self) -> float:
        """How long the daemon may sleep before something is due."""
        now = self._now()
        if now is None:
            return MAX_SLEEP
        times: list[datetime] = [t for (_, _, t) in self.retry.values()]
        for engine in self.engines.values():
            nxt = engine.next_after(now)
            if nxt is not None:
                times.append(nxt.at)
            times += [ov.until for ov in engine.overrides.values()]
        wait = min([(t - now).total_seconds() for t in times], default=MAX_SLEEP)
        return max(0.05, min(MAX_SLEEP, wait + 0.01))

    async def run(self) -> None:
        """Start, then tick whenever something is due; with no schedule, sleep until a reload
        brings one (no wake-ups without work)."""
        await self.start()
        while True:
            timeout = self.seconds_to_next() if self.engines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            fresh, self._fresh = sorted(self._fresh), set()
            await self._in_force(fresh, RELOADED)
            await self.tick(fresh)
