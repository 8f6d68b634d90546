"""Time on a gateway without a real-time clock.

Until the system clock is *known good* — the kernel says NTP has synchronised it, or it
reads later than the last time this agent saw (``data_dir/clock.json``) — a reading is
stamped from the boot clock (``CLOCK_BOOTTIME``, milliseconds since boot) and tagged with
the boot's id. Such readings wait in the buffer, held back from every uplink. When the
clock becomes good, the buffer turns their stamps into UTC (boot clock + the offset between
the two clocks now) and only then are they published. A jump of the wall clock against the
boot clock by more than ``clock.step`` is logged once and handled the same way: the clock
is good again at once if NTP vouches for it, otherwise once it passes the last time seen.

Readings of an earlier boot that never had a good clock cannot be placed exactly; they are
placed just before this boot began (never before the last good time seen, never later than
now) and logged. No reading reaches a platform with a time before the previous boot's last
reading, or in the future.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from buffer.clockfix import ClockFix

log = logging.getLogger(__name__)

PERSIST_EVERY_MS = 300_000  # the SD card is written this rarely for the last time seen
STA_UNSYNC = 0x0040
TIME_ERROR = 5
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
NTP_RECHECK_MS = 10_000  # while the clock is good, the kernel's NTP state is read this often


class ClockSource(Protocol):
    """Where the agent reads time; a test passes a fake one."""

    def wall_ms(self) -> int: ...
    def boot_ms(self) -> int: ...
    def boot_id(self) -> str: ...
    def ntp_synced(self) -> bool | None: ...  # None: the kernel does not say


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("rest", ctypes.c_long * 64)]  # big enough for struct timex


class SystemClock:
    def __init__(self) -> None:
        self._adjtimex: Callable[..., int] | None = None
        with contextlib.suppress(OSError, AttributeError, TypeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            self._adjtimex = libc.adjtimex
        self._boot = ""
        with contextlib.suppress(OSError):
            self._boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        if not self._boot:  # not Linux: one id per process start is the safe guess
            self._boot = f"pid-{os.getpid()}-{time.time_ns()}"

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def boot_ms(self) -> int:
        clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
        return time.clock_gettime_ns(clock) // 1_000_000

    def boot_id(self) -> str:
        return self._boot

    def ntp_synced(self) -> bool | None:
        """The kernel's view (adjtimex, read only); where the sandbox forbids it, systemd-timesyncd's flag."""
        if self._adjtimex is not None:
            tx = _Timex()
            state = self._adjtimex(ctypes.byref(tx))
            if state >= 0:
                return state != TIME_ERROR
        if TIMESYNCD_FLAG.exists():
            return True
        return None


class ClockGuard:
    def __init__(self, data_dir: Path, step_s: float, source: ClockSource | None = None,
                 on_good: Callable[[ClockFix], None] | None = None,
                 on_bad: Callable[[], None] | None = None) -> None:
        self.source = source or SystemClock()
        self.on_bad = on_bad
        self.path = data_dir / "clock.json"
        self.step_ms = int(step_s * 1000)
        self.on_good = on_good
        self.last_seen_ms = self._load()  # the latest good time any run of the agent saw
        self.floor_ms = self.last_seen_ms
        self.good = False
        self.reason = "not checked yet"
        self.offset_ms = 0
        self._persisted_ms = 0
        self._jumps_logged = 0
        self._ntp_synced: bool | None = None
        self._ntp_checked_ms = 0
        self.check()

    def _load(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["last_seen_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def persist(self, force: bool = False) -> None:
        """Write the last good time seen (atomically; rarely: the SD card pays for each write)."""
        if not self.good or not (force or self.last_seen_ms - self._persisted_ms >= PERSIST_EVERY_MS):
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"last_seen_ms": self.last_seen_ms}))
            os.replace(tmp, self.path)
            self._persisted_ms = self.last_seen_ms
        except OSError as exc:
            log.warning("clock: cannot record the last time seen in %s: %s", self.path, exc.strerror or exc)

    def check(self) -> bool:
        """Re-evaluate the clock (cheap: call it before each stamp). True when good."""
        wall, boot = self.source.wall_ms(), self.source.boot_ms()
        offset = wall - boot
        if self.good and abs(offset - self.offset_ms) > self.step_ms:
            jump = (offset - self.offset_ms) / 1000
            if self._jumps_logged < 3:
                log.warning("clock: the system time jumped by %+.0fs; readings are held until the time is"
                            " known good again", jump)
                self._jumps_logged += 1
            self.good = False
            if self.on_bad is not None:
                self.on_bad()
        if not self.good or boot - self._ntp_checked_ms >= NTP_RECHECK_MS:
            # a good clock stays good without asking the kernel on every poll (only the reason
            # shown may change); a clock not yet good is asked each time
            self._ntp_synced, self._ntp_checked_ms = self.source.ntp_synced(), boot
        synced = self._ntp_synced
        good, reason = False, ""
        if synced:
            good, reason = True, "synchronised by NTP"
        elif self.good:
            good, reason = True, self.reason  # no jump since it was known good
        elif wall > self.last_seen_ms:
            good, reason = True, "later than the last time seen" if self.last_seen_ms else "no earlier time known"
        else:
            reason = (f"{_iso(wall)} is before the last time seen ({_iso(self.last_seen_ms)}) and NTP has not"
                      f" synchronised it")
        if good and not self.good:
            self._became_good(wall, boot, reason)
        elif not good and (self.good or reason != self.reason):
            if self.good and self.on_bad is not None:
                self.on_bad()
            log.warning("clock: not known good (%s); readings are stamped from the boot clock and held back"
                        " until it is", reason)
        self.good, self.reason = good, reason
        if good:
            self.offset_ms = offset
            self.last_seen_ms = max(self.last_seen_ms, wall)
            self.persist()
        return good

    def _became_good(self, wall: int, boot: int, reason: str) -> None:
        if self.reason != "not checked yet":
            log.info("clock: known good (%s): held readings get their UTC time and go out", reason)
        if self.on_good is not None:
            self.on_good(ClockFix(self.source.boot_id(), wall - boot, wall - boot, self.floor_ms))

    def stamp(self) -> tuple[int, str | None]:
        """A reading's time: (UTC ms, None) on a good clock, else (boot ms, boot id)."""
        if self.check():
            return self.source.wall_ms(), None
        return self.source.boot_ms(), self.source.boot_id()

    def state(self) -> dict[str, object]:
        return {"good": self.good, "reason": self.reason, "last_seen_ms": self.last_seen_ms}


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "never"
