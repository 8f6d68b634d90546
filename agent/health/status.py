"""The running daemon's live status: what ``edge-agent status`` prints and metrics export.

:class:`StatusSource` gathers it from the agent's parts: devices (their pollers and activity),
uplinks (their workers' stats and what waits in the buffer for each), the buffer, the clock
and today's completeness. Other parts add sections with :meth:`StatusSource.add_section`
(``alarms``, ...): a name and a function returning JSON-able data, asked on each status.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from buffer.database import connect_readonly
from buffer.outbox import Outbox
from buffer.space import bytes_on_disk

from ..scheduler import DevicePoller
from ..uplinks.hj212.worker import Hj212UplinkWorker
from ..uplinks.mqtt import MqttUplinkWorker
from .activity import DeviceActivity
from .clock import clock_state
from .completeness import day_report, has_counts_table
from .days import LocalDays

Section = Callable[[], Any]


class StatusSource:
    def __init__(self, gateway: str, pollers: Mapping[str, DevicePoller], activity: Mapping[str, DeviceActivity],
                 uplinks: Mapping[str, MqttUplinkWorker | Hj212UplinkWorker], outbox: Outbox, days: LocalDays) -> None:
        self.gateway = gateway
        self.pollers = pollers
        self.activity = activity
        self.uplinks = uplinks
        self.outbox = outbox
        self.days = days
        self.started_ms = int(time.time() * 1000)
        self.sections: dict[str, Section] = {}

    def add_section(self, name: str, provider: Section) -> None:
        """``provider()`` is asked on each status (in the agent's event loop) for section ``name``."""
        self.sections[name] = provider

    def carriage(self) -> dict[str, frozenset[str] | None]:
        """Each uplink's devices (None: every device), for the completeness report."""
        return {name: up.carried for name, up in list(self.uplinks.items())}  # a reload may change them

    def intervals(self) -> dict[str, float]:
        """Each device's configured interval (not an alarm's fast_poll): what a platform expects."""
        return {dev: p.normal_interval for dev, p in self.pollers.items()}

    # -- without the database: cheap, from memory --------------------------------------------
    def device(self, dev: str, now_ms: int) -> dict[str, Any]:
        p, act = self.pollers[dev], self.activity[dev]
        polls, errors = act.last_hour(now_ms / 1000)
        out: dict[str, Any] = {
            "state": p.state, "interval": p.interval, "last_ok": p.last_good_ms,
            "last_ok_age": None if p.last_good_ms is None else round((now_ms - p.last_good_ms) / 1000, 1),
            "last_error": None, "polls_1h": polls, "errors_1h": errors,
            "polls_total": act.polls_total, "errors_total": act.errors_total,
        }
        if p.last_error is not None:
            ts, status, reason = p.last_error
            out["last_error"] = {"ts": ts, "status": status, "reason": reason}
        if p.offline:
            out["backoff"] = p.backoff
            out["retry_in"] = round(max(0.0, p.retry_at - time.monotonic()), 1)
            out["offline_for"] = round(time.monotonic() - p.offline_since, 1)
        return out

    def uplink(self, name: str) -> dict[str, Any]:
        st = self.uplinks[name].stats

        def stat(key: str, default: Any = 0) -> Any:  # MQTT and HJ 212 uplinks count different things
            return getattr(st, key, default)

        out = {"connected": st.connected, "since": stat("connected_since") or None,
               "last_ack": stat("last_ack") or None, "refused": stat("refused"), "errors": stat("errors"),
               "stalls": stat("stalls"), "last_error": st.last_error or None,
               "messages": stat("messages", stat("packets_sent")), "readings_acked": stat("readings_acked")}
        if hasattr(st, "packets_sent"):  # HJ 212: stored packets the platform has not answered yet
            out["packets_waiting"] = st.waiting
        return out

    def buffer(self) -> dict[str, Any]:
        path = self.outbox.path
        used = bytes_on_disk(path)
        c = self.outbox.counters
        return {"path": str(path), "used_bytes": used, "max_bytes": self.outbox.max_bytes,
                "use": round(used / self.outbox.max_bytes, 4), "last_seq": self.outbox.last_seq,
                "evicted": c.evicted, "dropped": c.dropped, "disk_full": c.disk_full}

    def live(self, now_ms: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gateway": self.gateway, "pid": os.getpid(), "now": now_ms, "started": self.started_ms,
            "timezone": self.days.timezone,
            "devices": {dev: self.device(dev, now_ms) for dev in self.pollers},
            "uplinks": {name: self.uplink(name) for name in self.uplinks},
            "buffer": self.buffer(), "clock": clock_state(),
        }
        for name, provider in self.sections.items():
            out[name] = provider()
        return out

    # -- from the database: in a worker thread -------------------------------------------------
    def stored(self, now_ms: int) -> dict[str, Any]:
        """Per uplink what waits (count, oldest ts), the buffer's row count, today's completeness."""
        conn = connect_readonly(self.outbox.path)
        try:
            waiting: dict[str, dict[str, Any]] = {}
            for name, bit in self.outbox.uplink_bits.items():
                count, oldest = conn.execute("SELECT count(*), min(seq) FROM readings WHERE pending & ?",
                                             (1 << bit,)).fetchone()
                ts = None
                if oldest is not None:
                    row = conn.execute("SELECT ts FROM readings WHERE seq = ?", (oldest,)).fetchone()
                    ts = row[0] if row and row[0] >= 0 else None  # < 0: held for a good clock, no time yet
                waiting[name] = {"waiting": count, "oldest_waiting": ts}
            readings = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            today = None
            if has_counts_table(conn):
                today = day_report(conn, self.days, self.days.today(now_ms), self.intervals(),
                                   self.carriage(), now_ms)
        finally:
            conn.close()
        return {"waiting": waiting, "readings": readings, "today": today}

    def snapshot_sync(self) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        return self._merge(self.live(now_ms), self.stored(now_ms))

    async def snapshot(self) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        live = self.live(now_ms)
        return self._merge(live, await asyncio.to_thread(self.stored, now_ms))

    @staticmethod
    def _merge(live: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
        for name, facts in stored["waiting"].items():
            if name in live["uplinks"]:
                live["uplinks"][name].update(facts)
        live["buffer"]["readings"] = stored["readings"]
        live["completeness"] = stored["today"]
        return live
