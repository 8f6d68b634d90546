"""Polling: each device at its interval, failures become readings, dead slaves back off.

Policy (the constants below):

- A device whose last ``OFFLINE_AFTER`` (3) polls got no answer at all (status ``timeout``)
  goes *offline*. Failures where the device did answer, badly (``crc_error``, ``garbage``,
  ``short_frame``, ``exception_XX``, ``decode_error``), cost the bus little and keep being
  polled and reported as they are: they tell the technician more than ``offline`` would.
- While offline, each scheduled poll yields an ``offline`` reading without touching the bus;
  one real poll (a *probe*) is made when the back-off has passed. The back-off starts at
  ``max(2 × interval, BACKOFF_MIN)`` and doubles after each failed probe up to ``BACKOFF_MAX``.
  Probes fall on the device's own poll slots, so a revived device is back within one back-off.
- The bus gives a unit whose last request timed out a single attempt, queued behind the
  other units (see ``drivers/modbus/buslock.py``): a dead slave costs the others on its bus
  at most one timeout per back-off period, spent in the bus's idle time when it has any.
- Each change of state is logged once: the first failure of a kind, going offline, coming back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from drivers.errors import DeviceOffline, DriverError, NoResponse
from drivers.reading import Polled, Reading

log = logging.getLogger(__name__)

OFFLINE_AFTER = 3  # consecutive polls without an answer
BACKOFF_MIN = 2.0  # seconds; the first back-off is at least two intervals
BACKOFF_MAX = 60.0  # seconds


def _utc_now() -> tuple[int, str | None]:
    return int(time.time() * 1000), None


def _shown(ts: int, clock: str | None) -> int:
    """The time status shows for a poll: its stamp, or the system time for a boot-clock stamp
    (held for a good clock), so that its age against the system time is right."""
    return ts if clock is None else int(time.time() * 1000)


class DevicePoller:
    def __init__(self, device_id: str, read: Callable[[], Awaitable[Polled]],
                 interval: float, submit: Callable[[Reading], None],
                 backoff_max: float = BACKOFF_MAX, backoff_min: float | None = None,
                 stamp: Callable[[], tuple[int, str | None]] | None = None) -> None:
        self.device_id = device_id
        self.stamp = stamp or _utc_now
        self.read = read
        self.interval = interval
        self.normal_interval = interval
        self.submit = submit
        self.backoff_min = backoff_min if backoff_min is not None else max(2 * interval, BACKOFF_MIN)
        self.backoff_max = max(backoff_max, self.backoff_min)
        self.silent_polls = 0
        self.offline = False
        self.offline_since = 0.0
        self.backoff = self.backoff_min
        self.retry_at = 0.0
        self.last_status = "ok"
        self.polls = 0  # polls that reached the bus
        self.bad_points: dict[str, str] = {}
        self.last_good_ms: int | None = None  # ts of the last reading with values (ok or partial)
        self.last_error: tuple[int, str, str] | None = None  # (ts ms, status, reason) of the last failure

    def hasten(self, interval: float | None) -> None:
        """Poll every ``interval`` (an alarm's fast_poll) from the next slot on; None restores
        the configured interval. Called from ``submit``, i.e. before the next slot is set."""
        new = min(interval, self.normal_interval) if interval is not None else self.normal_interval
        if new != self.interval:
            log.info("device %s: polling every %gs (%s)", self.device_id, new,
                     "alarm fast_poll" if interval is not None else "configured interval")
            self.interval = new

    async def poll_once(self, slot: float | None = None) -> Reading:
        """One scheduled poll; ``slot`` is its place on the schedule (monotonic seconds)."""
        ts, clock = self.stamp()
        now = time.monotonic() if slot is None else slot
        if self.offline and now < self.retry_at - self.interval / 2:
            return Reading(self.device_id, ts, {}, DeviceOffline.status, clock=clock)
        self.polls += 1
        began = time.perf_counter()
        try:
            polled = await self.read()
        except DriverError as exc:
            log.debug("device %s: poll failed in %.0f ms: %s (%s)", self.device_id,
                      (time.perf_counter() - began) * 1000, exc.status, exc)
            self._failed(exc, now)
            self.last_error = (_shown(ts, clock), exc.status, str(exc))
            return Reading(self.device_id, ts, {}, exc.status, clock=clock)
        log.debug("device %s: poll %s in %.0f ms, %d values", self.device_id, polled.status,
                  (time.perf_counter() - began) * 1000, len(polled.values))
        self._succeeded()
        self._note_bad_points(polled.errors)
        self.last_good_ms = _shown(ts, clock)
        if polled.errors:
            bad = ", ".join(f"{k}: {v}" for k, v in sorted(polled.errors.items()))
            self.last_error = (_shown(ts, clock), "partial", bad)
        return Reading(self.device_id, ts, polled.values, polled.status, polled.errors, polled.flags, clock)

    def _note_bad_points(self, errors: dict[str, str]) -> None:
        """Log once when the set of bad points changes, not on every poll."""
        if errors == self.bad_points:
            return
        if errors:
            log.warning("device %s: %d point(s) without a valid value: %s", self.device_id, len(errors),
                        ", ".join(f"{k} ({v})" for k, v in sorted(errors.items())))
        else:
            log.info("device %s: every point valid again", self.device_id)
        self.bad_points = dict(errors)

    def _succeeded(self) -> None:
        if self.offline:
            log.info("device %s: back online after %.0fs offline", self.device_id,
                     time.monotonic() - self.offline_since)
        elif self.last_status != "ok":
            log.info("device %s: ok again", self.device_id)
        self.offline = False
        self.silent_polls = 0
        self.backoff = self.backoff_min
        self.last_status = "ok"

    def _failed(self, exc: DriverError, now: float) -> None:
        silent = isinstance(exc, NoResponse)
        self.silent_polls = self.silent_polls + 1 if silent else 0
        if self.offline:
            if silent:
                self.backoff = min(self.backoff * 2, self.backoff_max)
                self.retry_at = now + self.backoff
                log.debug("device %s: still no answer, next try in %.0fs", self.device_id, self.backoff)
                return
            self.offline = False  # it answers again, if badly: poll it normally
            log.info("device %s: answers again (%s)", self.device_id, exc.status)
        if exc.status != self.last_status:
            next_step = (f"offline after {OFFLINE_AFTER} polls without an answer" if silent
                         else "it answers, so polling goes on")
            log.warning("device %s: %s (%s); %s", self.device_id, exc.status, exc, next_step)
        self.last_status = exc.status
        if self.silent_polls >= OFFLINE_AFTER:
            self.offline = True
            self.offline_since = time.monotonic()
            self.backoff = self.backoff_min
            self.retry_at = now + self.backoff
            log.warning("device %s: offline after %d polls without an answer; retrying every %.0fs..%.0fs",
                        self.device_id, self.silent_polls, self.backoff_min, self.backoff_max)

    @property
    def state(self) -> str:
        """``offline`` (backing off), ``degraded`` (failing, or some points bad) or ``ok``."""
        if self.offline:
            return "offline"
        return "ok" if self.last_status == "ok" and not self.bad_points else "degraded"

    async def run(self) -> None:
        """Poll at a fixed rate; a late poll does not shift the schedule, missed slots are skipped."""
        slot = time.monotonic()
        while True:
            reading = await self.poll_once(slot)
            self.submit(reading)
            slot += self.interval
            now = time.monotonic()
            if slot < now:
                slot += (int((now - slot) // self.interval) + 1) * self.interval
            await asyncio.sleep(slot - now)
