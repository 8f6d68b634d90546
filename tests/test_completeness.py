"""Completeness as a platform counts it: expected readings from the interval on local days,
and the counts the real outbox keeps per device, day and uplink (fake times, real SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.health.completeness import day_report
from agent.health.days import LocalDays, expected_readings
from agent.health.publisher import HealthPublisher
from agent.health.status import StatusSource
from agent.scheduler import DevicePoller
from buffer.database import connect_readonly
from buffer.outbox import Outbox
from buffer.uplinkbits import rename_uplink
from drivers.reading import Polled, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")


def ms(text: str, tz: ZoneInfo = SHANGHAI) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def test_expected_readings_on_full_partial_and_daylight_saving_days() -> None:
    days = LocalDays("Asia/Shanghai")
    start, end = days.bounds(date(2026, 11, 28))
    assert (end - start) == 86_400_000 and start == ms("2026-11-28T00:00:00")
    after = ms("2026-11-29T08:00:00")
    assert expected_readings(60, start, end, start - 1, after) == 1440  # a whole day at 1 min
    assert expected_readings(7, start, end, start - 1, after) == math.ceil(86400 / 7)
    # added at 10:00:05: 13 h 59 min 55 s of the day are left, a poll at the start of each minute
    assert expected_readings(60, start, end, ms("2026-11-28T10:00:05"), after) == 840
    # today, at noon, counting since midnight: the poll at 12:00:00 is not due yet
    assert expected_readings(60, start, end, start, ms("2026-11-28T12:00:00")) == 720
    assert expected_readings(60, start, end, start, ms("2026-11-28T12:00:00.001")) == 721
    assert expected_readings(60, start, end, None, after) == 0  # never polled: nothing expected
    assert expected_readings(60, start, end, ms("2026-11-29T01:00:00"), after) == 0
    berlin = LocalDays("Europe/Berlin")  # the spring-forward day has 23 hours
    b0, b1 = berlin.bounds(date(2026, 3, 29))
    assert expected_readings(60, b0, b1, b0, b1 + 1) == 23 * 60


def test_outbox_counts_polled_valid_and_delivered_per_uplink_and_local_day(tmp_path: Path) -> None:
    days = LocalDays("Asia/Shanghai")
    outbox = Outbox(tmp_path / "outbox.db", ["city", "bureau"], day_of=days.day_of)
    outbox.start()
    try:
        # 23:59:50 .. 00:00:10 local: 10-s readings on both sides of midnight
        times = [ms("2026-11-27T23:59:30") + 10_000 * i for i in range(6)]  # :30 :40 :50 | 00 :10 :20
        statuses = ["ok", "timeout", "ok", "ok", "partial", "ok"]
        for ts, status in zip(times, statuses, strict=True):
            outbox.submit(Reading("dust-1", ts, {"pm2_5": 1} if status != "timeout" else {}, status))
        outbox.submit(Reading("meter-1", ms("2026-11-28T09:00:00"), {"energy_import": 1.0}, "ok"))
        assert outbox.sync()
        outbox.ack("city", [1, 2, 3, 4, 5, 6, 7])
        outbox.ack("city", [3, 4])  # a duplicate's PUBACK: already delivered, not counted again
        outbox.ack("bureau", [4, 5])
        assert outbox.sync()
    finally:
        outbox.close()
    conn = connect_readonly(tmp_path / "outbox.db")
    intervals = {"dust-1": 10.0, "meter-1": 60.0}
    day1 = day_report(conn, days, date(2026, 11, 27), intervals, ["city", "bureau"], ms("2026-11-28T12:00:00"))
    day2 = day_report(conn, days, date(2026, 11, 28), intervals, ["city", "bureau"], ms("2026-11-28T00:00:30"))
    conn.close()
    d1, d2 = day1["devices"]["dust-1"], day2["devices"]["dust-1"]
    assert day1["final"] and not day2["final"]
    # day 1: first reading 23:59:30, the day ends at 24:00: 3 expected, 3 polled (2 valid)
    assert (d1["expected"], d1["received"], d1["valid"]) == (3, 3, 2)
    assert d1["delivered"] == {"city": 3, "bureau": 0} and d1["delivered_valid"] == {"city": 2, "bureau": 0}
    assert d1["transmission_rate"] == 1.0 and d1["effective_rate"] == 0.6666
    # day 2 at 00:00:30: polls due at :00 :10 :20 — 3 expected; the partial one is not valid
    assert (d2["expected"], d2["received"], d2["valid"]) == (3, 3, 2)
    assert d2["delivered"] == {"city": 3, "bureau": 2} and d2["delivered_valid"] == {"city": 2, "bureau": 1}
    assert d2["uplinks"]["bureau"] == {"transmission_rate": 0.6666, "effective_rate": 0.3333}
    # meter-1 first polled at 09:00 on day 2: nothing expected of it yet at 00:00:30
    assert day2["devices"]["meter-1"]["expected"] == 0 and day2["devices"]["meter-1"]["transmission_rate"] is None
    assert "meter-1" in day1["devices"] and day1["devices"]["meter-1"]["expected"] == 0
    # an uplink renamed in the buffer takes its delivered counts along
    rw = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    rename_uplink(rw, "city", "city-ops")
    rw.close()
    conn = connect_readonly(tmp_path / "outbox.db")
    again = day_report(conn, days, date(2026, 11, 28), intervals, ["city-ops", "bureau"], ms("2026-11-28T00:00:30"))
    conn.close()
    assert again["devices"]["dust-1"]["delivered"] == {"city-ops": 3, "bureau": 2}


def test_health_goes_out_every_interval_and_the_finished_day_just_after_midnight(tmp_path: Path) -> None:
    """The publisher on a fake clock from 23:59:40 local: today's counts at once, the final counts
    of the day that ended 1 s after midnight, then the new day's; a real outbox holds the counts."""
    days = LocalDays("Asia/Shanghai")
    outbox = Outbox(tmp_path / "outbox.db", ["central"], day_of=days.day_of)
    outbox.start()
    t0 = ms("2026-11-27T23:59:40")
    for i in range(4):  # 23:59:40 .. 23:59:55, every 5 s
        outbox.submit(Reading("dust-1", t0 + 5000 * i, {"pm2_5": 1}, "ok"))
    outbox.submit(Reading("dust-1", ms("2026-11-28T00:00:00"), {"pm2_5": 1}, "ok"))
    assert outbox.sync()
    poller = DevicePoller("dust-1", _never_read, 5.0, lambda _r: None)
    source = StatusSource("site-test", {"dust-1": poller}, {}, {}, outbox, days)
    now = [t0 / 1000]
    published: list[dict] = []

    async def fake_sleep(seconds: float) -> None:
        if len(published) >= 4:
            raise asyncio.CancelledError
        now[0] += seconds

    health = HealthPublisher(source, 30.0, lambda text: published.append(json.loads(text)),
                             clock=lambda: now[0], sleep=fake_sleep)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(health.run())
    finally:
        outbox.close()
    assert [(p["day"], p["final"]) for p in published] == [
        ("2026-11-27", False), ("2026-11-27", True), ("2026-11-28", False), ("2026-11-28", False)]
    final = published[1]["devices"]["dust-1"]
    assert (final["expected"], final["received"], final["valid"]) == (4, 4, 4)
    assert final["transmission_rate"] == 1.0 and published[1]["at"] == ms("2026-11-28T00:00:01")
    # at 00:00:01 the poll due at 00:00:00 is in; 30 s later 7 polls were due, one came
    assert published[2]["devices"]["dust-1"]["expected"] == 1
    assert published[3]["devices"]["dust-1"]["expected"] == 7 and published[3]["devices"]["dust-1"]["received"] == 1


async def _never_read() -> Polled:
    raise AssertionError("not polled in this test")


def test_an_agent_started_after_midnight_publishes_the_day_it_missed_first(tmp_path: Path) -> None:
    days = LocalDays("Asia/Shanghai")
    outbox = Outbox(tmp_path / "outbox.db", ["central"], day_of=days.day_of)
    outbox.start()
    outbox.submit(Reading("dust-1", ms("2026-11-27T23:00:00"), {"pm2_5": 1}, "ok"))
    assert outbox.sync()
    source = StatusSource("site-test", {"dust-1": DevicePoller("dust-1", _never_read, 600.0, lambda _r: None)},
                          {}, {}, outbox, days)
    published: list[dict] = []

    async def stop_after_first_round(_seconds: float) -> None:
        raise asyncio.CancelledError

    health = HealthPublisher(source, 300.0, lambda text: published.append(json.loads(text)),
                             clock=lambda: ms("2026-11-28T08:00:00") / 1000, sleep=stop_after_first_round)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(health.run())
    finally:
        outbox.close()
    assert [(p["day"], p["final"]) for p in published] == [("2026-11-27", True), ("2026-11-28", False)]
    # first reading at 23:00 with a 10-min interval: 6 expected, 1 received
    missed = published[0]["devices"]["dust-1"]
    assert (missed["expected"], missed["received"], missed["transmission_rate"]) == (6, 1, 0.1666)


def test_an_uplink_that_counts_its_own_deliveries_and_the_devices_it_reports(tmp_path: Path) -> None:
    """An HJ 212 uplink takes readings without counting them (they go into its aggregates) and
    counts them when the platform answers; a device it does not report shows no rate for it."""
    days = LocalDays("Asia/Shanghai")
    outbox = Outbox(tmp_path / "outbox.db", ["city", "bureau"], day_of=days.day_of)
    outbox.start()
    try:
        at = ms("2026-11-28T09:00:00")
        for i in range(4):
            outbox.submit(Reading("dust-1", at + 10_000 * i, {"pm2_5": 1}, "ok" if i else "partial"))
        outbox.submit(Reading("meter-1", at, {"energy_import": 1.0}, "ok"))
        assert outbox.sync()
        outbox.ack("city", [1, 2, 3, 4, 5])
        outbox.ack("bureau", [1, 2, 3, 4, 5], counted=False)
        assert outbox.sync()
        conn = connect_readonly(tmp_path / "outbox.db")
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 0  # both took them
        carriage = {"city": None, "bureau": {"dust-1"}}
        before = day_report(conn, days, date(2026, 11, 28), {"dust-1": 10.0, "meter-1": 60.0}, carriage, at + 60_000)
        conn.close()
        outbox.count_delivered("bureau", [("dust-1", at, 4, 3)])  # the minute packet answered
        assert outbox.sync()
    finally:
        outbox.close()
    conn = connect_readonly(tmp_path / "outbox.db")
    after = day_report(conn, days, date(2026, 11, 28), {"dust-1": 10.0, "meter-1": 60.0}, carriage, at + 60_000)
    conn.close()
    assert before["devices"]["dust-1"]["delivered"] == {"city": 4, "bureau": 0}
    assert after["devices"]["dust-1"]["delivered"] == {"city": 4, "bureau": 4}
    assert after["devices"]["dust-1"]["delivered_valid"] == {"city": 3, "bureau": 3}
    assert after["devices"]["meter-1"]["delivered"] == {"city": 1}  # the bureau is not sent the meter
    assert "bureau" not in after["devices"]["meter-1"]["uplinks"]
