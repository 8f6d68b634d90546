"""Readings held while the clock is not known good, seen by the parts that count and judge
them: completeness counts, alarms, status and the HJ 212 uplink (real outbox, real SQLite;
fake times)."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from agent.alarms.config import AlarmRule
from agent.alarms.engine import STATE_KEY, AlarmEngine
from agent.alarms.store import read_store
from agent.health.activity import DeviceActivity
from agent.health.completeness import day_report
from agent.health.days import LocalDays
from agent.health.status import StatusSource
from agent.scheduler import DevicePoller
from buffer.clockfix import ClockFix
from buffer.completeness import days as count_days
from buffer.database import connect_readonly
from buffer.outbox import Outbox
from drivers.reading import Polled, Reading
from tests.helpers import wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


def test_readings_held_for_the_clock_count_on_the_day_they_were_really_polled(tmp_path: Path) -> None:
    days = LocalDays("Asia/Shanghai")
    outbox = Outbox(tmp_path / "outbox.db", ["city"], day_of=days.day_of)
    outbox.start()
    boot_start = ms("2026-11-28T09:00:00")  # the Pi booted at 09:00 without a clock
    try:
        for i in range(3):  # polled 10, 20, 30 s after boot, before NTP answered
            outbox.submit(Reading("dust-1", 10_000 * (i + 1), {"pm2_5": 1}, "ok", clock="boot-a"))
        assert outbox.sync()
        outbox.release_held(ClockFix("boot-a", boot_start, boot_start, floor_ms=0))
        outbox.submit(Reading("dust-1", boot_start + 40_000, {"pm2_5": 1}, "ok"))  # clock good now
        assert outbox.sync()
        wait_for(lambda: outbox.counters.clock_releases == 1, 5, "the release")
        outbox.ack("city", [1, 2, 3, 4])
        assert outbox.sync()
    finally:
        outbox.close()
    conn = connect_readonly(tmp_path / "outbox.db")
    try:
        assert count_days(conn) == ["2026-11-28"]  # nothing counted in 1970
        report = day_report(conn, days, date(2026, 11, 28), {"dust-1": 10.0}, ["city"], ms("2026-11-28T09:00:45"))
    finally:
        conn.close()
    dust = report["devices"]["dust-1"]
    # first poll at 09:00:10, now 09:00:45: polls due at :10 :20 :30 :40 — all four received and delivered
    assert (dust["expected"], dust["received"], dust["valid"]) == (4, 4, 4)
    assert dust["delivered"] == {"city": 4} and dust["transmission_rate"] == 1.0


def test_alarms_keep_their_for_and_no_data_timing_when_the_clock_becomes_good(tmp_path: Path) -> None:
    """Boot-clock times while held, UTC after: a ``for: 30s`` alarm is not raised at the change
    after 10 s, a ``no_data`` alarm is not raised by one failed poll, and a raised alarm's
    ``since`` is a time of today, not of 1970."""
    outbox = Outbox(tmp_path / "outbox.db", ["central"])
    outbox.start()
    rules = {name: AlarmRule.model_validate({"device": "level-1", "point": "water_level", **fields})
             for name, fields in {"flood": {"above": 0.3, "for": "30s"}, "silent": {"no_data": "60s"},
                                  "high": {"above": 1.0}}.items()}
    engine = AlarmEngine(rules, lambda ev, st: outbox.submit_event(ev, STATE_KEY, st))
    boot_start = ms("2026-11-28T09:00:00")
    try:
        for t in (10_000, 15_000, 20_000):  # high water seen before NTP answered
            engine.feed(Reading("level-1", t, {"water_level": 1.5}, "ok", clock="boot-a"))
        assert engine.states["flood"].state == "pending"
        assert engine.states["high"].state == "raised"
        engine.feed(Reading("level-1", boot_start + 25_000, {}, "timeout"))  # clock good: one failed poll
        engine.feed(Reading("level-1", boot_start + 30_000, {"water_level": 1.5}, "ok"))
        assert outbox.sync()
        events = [(e["alarm"], e["state"]) for e in read_store(tmp_path / "outbox.db")[1]]
        assert events == [("high", "raised")]  # high for 20 s of 30, and silent for 5 s of 60
        active = {a["alarm"]: a["since"] for a in engine.active()}
        assert active["high"] >= boot_start and active["high"] <= boot_start + 30_000
        engine.feed(Reading("level-1", boot_start + 45_000, {"water_level": 1.5}, "ok"))
        assert outbox.sync()
        events = [(e["alarm"], e["state"]) for e in read_store(tmp_path / "outbox.db")[1]]
        assert events == [("high", "raised"), ("flood", "raised")]  # 35 s after it first rose
    finally:
        outbox.close()


def test_status_shows_the_last_good_poll_and_the_oldest_waiting_reading_as_times_of_now(tmp_path: Path) -> None:
    """While the clock is not known good, status says the last good poll was just now (not 56
    years ago) and gives no 1970 age to readings held for the clock."""
    outbox = Outbox(tmp_path / "outbox.db", ["central"], day_of=LocalDays("Asia/Shanghai").day_of)
    outbox.start()
    submitted: list[Reading] = []

    async def read() -> Polled:
        return Polled({"pm2_5": 35})

    poller = DevicePoller("dust-1", read, 10.0, submitted.append, stamp=lambda: (12_000, "boot-a"))
    try:
        reading = asyncio.run(poller.poll_once())
        assert reading.clock == "boot-a" and reading.ts == 12_000
        outbox.submit(reading)
        assert outbox.sync()
        source = StatusSource("site-test", {"dust-1": poller}, {"dust-1": DeviceActivity()},
                              {"central": SimpleNamespace(carried=None)},  # type: ignore[dict-item]
                              outbox, LocalDays("Asia/Shanghai"))
        now_ms = int(time.time() * 1000)
        device = source.device("dust-1", now_ms)
        assert 0 <= device["last_ok_age"] < 60
        waiting = source.stored(now_ms)["waiting"]["central"]
        assert waiting["waiting"] == 1 and waiting["oldest_waiting"] is None  # held: no time to show yet
    finally:
        outbox.close()


def test_an_hj212_uplink_folds_and_takes_readings_released_after_later_ones(tmp_path: Path) -> None:
    """Readings held for the clock get their UTC time after later readings were already taken
    by the HJ 212 uplink: they are still folded into their periods and leave the buffer."""
    from agent.uplinks.hj212.config import Hj212Uplink
    from agent.uplinks.hj212.worker import Hj212UplinkWorker

    cfg = Hj212Uplink.model_validate({"type": "hj212", "host": "127.0.0.1", "port": 9, "mn": "010000A8900016F000169DC0",
                                      "realtime": False, "min_interval": 600, "hourly": False, "daily": False,
                                      "reconnect_min": 5, "reconnect_max": 5})
    outbox = Outbox(tmp_path / "outbox.db", ["env"], commit_interval=0.01)
    outbox.start()
    worker = Hj212UplinkWorker("env", cfg, outbox, tmp_path, {"dust-1": ["pm10"]}, {"dust-1": 10.0}, SHANGHAI)
    worker.start()
    now_ms = int(time.time() * 1000)
    reader = outbox.reader()
    try:
        for t in (5_000, 15_000):  # before NTP answered
            outbox.submit(Reading("dust-1", t, {"pm10": 60}, "ok", clock="boot-a"))
        outbox.submit(Reading("dust-1", now_ms, {"pm10": 62}, "ok"))  # the first with a good clock
        assert outbox.sync()
        wait_for(lambda: worker.store.folded_seq == 3, 5, "the good reading folded")
        outbox.release_held(ClockFix("boot-a", now_ms - 20_000, now_ms - 20_000, floor_ms=0))
        assert outbox.sync()

        def polls() -> int:
            return int(worker.store.conn.execute("SELECT coalesce(sum(readings), 0) FROM polls").fetchone()[0])

        wait_for(lambda: polls() == 3, 5, "the released readings folded")
        outbox.sync()
        wait_for(lambda: reader.fetch(outbox.uplink_bits["env"], 0, None, 10) == [], 5, "the readings taken")
    finally:
        reader.close()
        worker.stop()
        outbox.close()
