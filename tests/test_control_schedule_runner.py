"""The daemon's schedule runner on a fake clock, writing to a lamp controller simulated on a
pty: what a restart in the night applies, steps at astral's sun times, a platform command's
override ending at the next step, a failed step tried again, and the audit of each."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from astral import Observer, sun

from agent.config import load_config
from agent.control.audit import AuditLog
from agent.control.commands import Channel
from agent.control.schedule_runner import RETRY_SECONDS
from agent.control.service import ControlService
from agent.harness.site import device, mqtt_uplink, serial_bus, write_site
from agent.wiring import build_devices
from tests.helpers import SimulatorThread, edge_agent

LAMP = "generic-smart-pole-lamp-controller"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SJZ = Observer(latitude=38.04, longitude=114.51)
SCHEDULE = """schedules:
  street-lights:
    devices: [lamp-1]
    location: {lat: 38.04, lon: 114.51}
    steps:
      - {at: sunset+10m, set: {lamp_on: true, dim_level: 100}}
      - {at: "00:30", set: {dim_level: 50}}
      - {at: sunrise-10m, set: {lamp_on: false}}
"""


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def local(d: date, h: int, mi: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, h, mi, tzinfo=SHANGHAI)


def config(tmp_path: Path, port: str) -> Path:
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(port, baudrate=9600, timeout="0.3s", retries=0)},
        devices={"lamp-1": device("rs485-1", LAMP, 5, interval="1s", control={"allow": ["lamp_on", "dim_level"]})},
        uplinks={"city-ops": mqtt_uplink(None, commands=True)}, extra=SCHEDULE)


def test_a_night_on_the_fake_clock(tmp_path: Path) -> None:
    day = date(2026, 6, 21)
    sunset = sun.sunset(SJZ, date=day, tzinfo=SHANGHAI) + timedelta(minutes=10)
    sunrise = sun.sunrise(SJZ, date=day + timedelta(days=1), tzinfo=SHANGHAI) - timedelta(minutes=10)
    clock = FakeClock(local(day + timedelta(days=1), 2))  # a restart in the middle of the night
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    cfg = config(tmp_path, sim.serial_port)
    loaded = load_config(str(cfg))
    city = Channel("city-ops", commands=True)

    async def night() -> list[tuple[str, object]]:
        buses, devices = build_devices(loaded)
        audit = AuditLog(tmp_path / "data" / "control.db", clock=clock)
        service = ControlService(loaded, devices, audit, clock=clock)
        runner = service.schedules
        seen: list[tuple[str, object]] = []

        async def at(t: datetime) -> None:
            clock.at = t
            await runner.tick()
            seen.append((t.strftime("%H:%M:%S"), dict(slave.override)))

        try:
            await runner.start()
            seen.append(("start", dict(slave.override)))
            await at(sunrise - timedelta(seconds=1))
            await at(sunrise)
            await at(sunset - timedelta(seconds=1))
            await at(sunset)
            await at(local(day, 21))
            reply = await service.command(city, "lamp-1", json.dumps({"id": "c-9", "values": {"dim_level": 30}}))
            assert reply["status"] == "ok" and reply["values"] == {"dim_level": 30}
            await at(local(day, 23))
            await at(local(day + timedelta(days=1), 0, 30))
            return seen
        finally:
            audit.close()
            for bus in buses.values():
                await bus.close()

    try:
        # the fake day: sunrise on the 22nd and sunset on the 21st, walked through in one order
        day_walk = asyncio.run(night())
    finally:
        sim.stop()
    on_night = {"lamp_on": True, "dim_level": 50}
    assert day_walk[0] == ("start", on_night)
    assert day_walk[1][1] == on_night  # a second before sunrise-10m: nothing yet
    assert day_walk[2] == (sunrise.strftime("%H:%M:%S"), {"lamp_on": False, "dim_level": 50})
    assert day_walk[3][1] == {"lamp_on": False, "dim_level": 50}
    assert day_walk[4] == (sunset.strftime("%H:%M:%S"), {"lamp_on": True, "dim_level": 100})
    assert day_walk[5][1] == {"lamp_on": True, "dim_level": 100}
    assert day_walk[6][1] == {"lamp_on": True, "dim_level": 30}  # 23:00: the command still holds
    assert day_walk[7][1] == {"lamp_on": True, "dim_level": 50}  # 00:30: the next step ends the hold
    assert slave.writes() == [("holding", 0, 1), ("coil", 0, 1),  # start
                              ("coil", 0, 1),  # sunrise-10m
                              ("coil", 0, 1), ("holding", 0, 1),  # sunset+10m
                              ("holding", 0, 1),  # the command
                              ("holding", 0, 1), ("coil", 0, 1)]  # override ended: what is in force
    log = edge_agent("control", "log", "-c", str(cfg), "--limit", "20").stdout
    lines = [line for line in log.splitlines() if not line.startswith(" ")][1:]
    assert [line.split()[3:] for line in lines] == [
        ["schedule", "street-lights", "at", "start", "ok"],
        ["schedule", "street-lights", "sunrise-10m", "ok"],
        ["schedule", "street-lights", "sunset+10m", "ok"],
        ["command", "city-ops", "c-9", "ok"],
        ["schedule", "street-lights", "override", "ended", "ok"],
    ]


def test_a_failed_step_is_tried_again(tmp_path: Path) -> None:
    day = date(2026, 12, 21)
    clock = FakeClock(local(day, 12))
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    loaded = load_config(str(config(tmp_path, sim.serial_port)))

    async def go() -> list[str]:
        buses, devices = build_devices(loaded)
        audit = AuditLog(tmp_path / "data" / "control.db", clock=clock)
        service = ControlService(loaded, devices, audit, clock=clock)
        try:
            slave.set_fault("dead")
            await service.schedules.start()  # day: lamp_on false, dim_level 50 (from 00:30)
            clock.at += timedelta(seconds=RETRY_SECONDS - 1)
            await service.schedules.tick()  # too early to try again
            slave.set_fault("none")
            clock.at += timedelta(seconds=2)
            await service.schedules.tick()
            return [e.result for e in audit.entries()]
        finally:
            audit.close()
            for bus in buses.values():
                await bus.close()

    try:
        results = asyncio.run(go())
    finally:
        sim.stop()
    assert results == ["failed", "ok"]
    assert slave.override == {"lamp_on": False, "dim_level": 50}


def test_a_redelivery_during_the_write_gets_the_first_reply_and_writes_nothing(tmp_path: Path) -> None:
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    loaded = load_config(str(config(tmp_path, sim.serial_port)))
    raw = json.dumps({"id": "c-1", "values": {"dim_level": 61}})

    async def go() -> list[dict[str, object]]:
        buses, devices = build_devices(loaded)
        audit = AuditLog(tmp_path / "data" / "control.db")
        service = ControlService(loaded, devices, audit)
        try:
            city = Channel("city-ops", commands=True)
            return list(await asyncio.gather(*(service.command(city, "lamp-1", raw) for _ in range(3))))
        finally:
            audit.close()
            for bus in buses.values():
                await bus.close()

    try:
        replies = asyncio.run(go())
    finally:
        sim.stop()
    assert replies == [{"id": "c-1", "status": "ok", "reason": "", "values": {"dim_level": 61}}] * 3
    assert slave.writes() == [("holding", 0, 1)]


def test_a_command_with_hold_spans_the_next_step(tmp_path: Path) -> None:
    day = date(2026, 6, 22)
    clock = FakeClock(local(day, 0, 25))
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    loaded = load_config(str(config(tmp_path, sim.serial_port)))
    hold = json.dumps({"id": "h-1", "values": {"dim_level": 80}, "hold": 600})

    async def go() -> list[object]:
        buses, devices = build_devices(loaded)
        audit = AuditLog(tmp_path / "data" / "control.db", clock=clock)
        service = ControlService(loaded, devices, audit, clock=clock)
        seen: list[object] = []
        try:
            await service.schedules.start()
            seen.append(slave.override["dim_level"])  # 100 from sunset+10m
            await service.command(Channel("city-ops", commands=True), "lamp-1", hold)
            for minute in (31, 34, 36):  # the 00:30 step falls inside the hold, which ends at 00:35
                clock.at = local(day, 0, minute)
                await service.schedules.tick()
                seen.append(slave.override["dim_level"])
            return seen
        finally:
            audit.close()
            for bus in buses.values():
                await bus.close()

    try:
        assert asyncio.run(go()) == [100, 80, 80, 50]
    finally:
        sim.stop()


def _schedule_at_eight(dim: int) -> str:
    """SCHEDULE with an evening step at 20:00 setting ``dim``, after sunset+10m in June."""
    step = f'      - {{at: "20:00", set: {{dim_level: {dim}}}}}\n'
    return SCHEDULE.replace('      - {at: "00:30"', step + '      - {at: "00:30"')


def test_a_reload_applies_a_changed_schedule_at_once_and_keeps_a_hold(tmp_path: Path) -> None:
    """The daemon's runner (``run``) gets a reload's schedules: a changed one applies what it has
    in force now; an unchanged one writes nothing; a device a platform command holds keeps the
    held value until the hold ends, then gets the new schedule's value."""
    day = date(2026, 6, 21)
    clock = FakeClock(local(day, 21))
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    cfg = config(tmp_path, sim.serial_port)

    def reloaded(dim: int | None) -> object:
        text = cfg.read_text()
        start = text.index("schedules:")
        changed = tmp_path / "changed.yaml"
        changed.write_text(text[:start] + (SCHEDULE if dim is None else _schedule_at_eight(dim)))
        return load_config(str(changed))

    async def until(cond: object, what: str) -> None:
        for _ in range(100):
            if callable(cond) and cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {what}")

    async def go() -> list[object]:
        loaded = load_config(str(cfg))
        buses, devices = build_devices(loaded)
        audit = AuditLog(tmp_path / "data" / "control.db", clock=clock)
        service = ControlService(loaded, devices, audit, clock=clock)
        runner = asyncio.create_task(service.schedules.run())
        seen: list[object] = []
        try:
            await until(lambda: slave.override.get("dim_level") == 100, "start")  # sunset+10m's 100
            writes = len(slave.writes())
            service.retarget(reloaded(None))  # the same schedules: nothing to write
            await asyncio.sleep(1)  # the runner's turn (a write would take ~0.1 s)
            seen.append(len(slave.writes()) - writes)
            service.retarget(reloaded(60))  # 20:00 now sets 60: in force at 21:00
            await until(lambda: slave.override.get("dim_level") == 60, "the reloaded schedule's 60")
            hold = json.dumps({"id": "h-1", "values": {"dim_level": 30}, "hold": 600})
            await service.command(Channel("city-ops", commands=True), "lamp-1", hold)
            service.retarget(reloaded(70))  # changed again while the platform holds the lamp
            await asyncio.sleep(1)  # the runner's turn (a write would take ~0.1 s)
            seen.append(slave.override["dim_level"])
            clock.at = local(day, 21, 11)  # the hold has ended
            await service.schedules.tick()
            seen.append(slave.override["dim_level"])
            return seen
        finally:
            runner.cancel()
            audit.close()
            for bus in buses.values():
                await bus.close()

    try:
        assert asyncio.run(go()) == [0, 30, 70]
    finally:
        sim.stop()
    log = edge_agent("control", "log", "-c", str(cfg), "--limit", "20").stdout
    lines = [line.split()[3:] for line in log.splitlines() if not line.startswith(" ")][1:]
    assert lines == [["schedule", "street-lights", "at", "start", "ok"],
                     ["schedule", "street-lights", "reloaded", "ok"],
                     ["command", "city-ops", "h-1", "ok"],
                     ["schedule", "street-lights", "override", "ended", "ok"]]


def test_a_write_that_fails_after_a_reload_removed_its_schedule_is_not_retried(tmp_path: Path) -> None:
    """The write was on the wire when the reload came; its failure must not leave a retry for a
    schedule that is gone (the runner would wake every 50 ms for it until a restart)."""
    from types import SimpleNamespace

    from agent.control.schedule import engines
    from agent.control.schedule_runner import ScheduleRunner

    loaded = load_config(str(config(tmp_path, "/dev/null")))
    clock = FakeClock(local(date(2026, 6, 21), 21))
    release = asyncio.Event()

    async def slow_failing_write(*_args: object) -> object:
        await release.wait()
        return SimpleNamespace(status="failed")

    async def go() -> dict[object, object]:
        runner = ScheduleRunner(engines(loaded.config.schedules, "Asia/Shanghai", clock), slow_failing_write)
        engine = runner.engines["street-lights"]
        write = asyncio.create_task(runner._apply(engine, "lamp-1", {"dim_level": 50}, "test", engine.now()))
        await asyncio.sleep(0)
        runner.replace({})  # the reload removed the schedule
        release.set()
        await write
        assert runner.seconds_to_next() == 30.0  # nothing due: the longest sleep
        return dict(runner.retry)

    assert asyncio.run(go()) == {}
