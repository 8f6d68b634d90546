"""Quality per point: one bad point never erases a reading, and the platform is told which
point was bad and why. Real parts: pymodbus servers (the simulator) on TCP and a pty, the
agent as a process, a real mosquitto, the SQLite buffer on disk."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from agent.localbroker import LocalBroker
from drivers.catalog import resolve_profile
from drivers.modbus.bus import ModbusBus
from drivers.modbus.device import ModbusDevice
from drivers.modbus.simulator.runner import SimRunner
from drivers.modbus.simulator.server import SimSlave
from drivers.reading import Polled
from tests.helpers import AgentProcess, edge_agent, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

SDM630_POINTS = set(resolve_profile("eastron-sdm630").points)


def meter_config(tmp_path: Path, tcp_port: int, broker: LocalBroker, profile: str = "eastron-sdm630") -> Path:
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(tcp_port)},
        devices={"meter-1": device("lan", profile, 1, interval="300ms")},
        uplinks={"central": mqtt_uplink(broker.port, reconnect_max="2s")})


def test_a_nan_power_factor_keeps_every_other_value(tmp_path: Path, broker: LocalBroker) -> None:
    slave = SimSlave(unit=1, profile=resolve_profile("eastron-sdm630"), override={"power_factor": math.nan})
    sim = SimRunner([slave], "tcp").start()
    collector = Collector(broker.port, host=broker.host).start()
    cfg = meter_config(tmp_path, sim.tcp_port, broker)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(collector.readings("meter-1")) >= 3, 30, "3 readings of the meter")
        once = edge_agent("once", "-c", str(cfg))
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
    assert rc == 0, agent.log()
    for r in collector.readings("meter-1"):
        assert r.status == "partial", r
        assert r.errors == {"power_factor": "nan"}
        assert set(r.values) == SDM630_POINTS - {"power_factor"}
        for point, value in r.values.items():
            assert slave.was_served(point, value), (point, value)
    assert "meter-1  (eastron-sdm630, unit 1 on lan)  partial in" in once.stdout, once.stdout
    assert "power_factor   -  (nan)" in once.stdout
    assert "voltage_l1" in once.stdout and "Traceback" not in once.stdout + once.stderr
    assert "power_factor (nan)" in agent.log()  # named once in the log, with the reason


def test_exception_02_on_one_block_keeps_the_others_and_is_split_once() -> None:
    # SDM630's plan: input 0x0000-0x000B and 0x0034-0x004B; the second holds a hole at 0x003E
    slave = SimSlave(unit=1, profile=resolve_profile("eastron-sdm630"), refuse=[("input", 0x3E, 0x3F)])

    async def polls(n: int) -> list[Polled]:
        with SimRunner([slave], "tcp") as sim:
            bus = ModbusBus("lan", "tcp", host="127.0.0.1", tcp_port=sim.tcp_port, timeout=0.5)
            device = ModbusDevice(bus, 1, slave.profile)
            try:
                return [await device.read() for _ in range(n)]
            finally:
                await bus.close()

    results = asyncio.run(polls(5))
    for polled in results:
        assert polled.errors == {"power_factor": "exception_02"}, polled
        assert set(polled.values) == SDM630_POINTS - {"power_factor"}
        assert polled.status == "partial"
    log = list(slave.request_log)
    assert log.count(("input", 0x34, 24)) == 1, log  # the merged block was asked once, then remembered split
    # from then on every poll asks the readable parts and the one refused register, nothing more
    steady = [("input", 0x00, 12), ("input", 0x34, 2), ("input", 0x3E, 2), ("input", 0x46, 6)]
    assert log[-16:] == steady * 4, log
    assert len(log) == 2 + 3 + 4 * 4, log  # the first poll: both blocks and the two halves

def test_invalid_and_out_of_range_values_reach_the_platform_as_such(tmp_path: Path, broker: LocalBroker) -> None:
    own = tmp_path / "dust.yaml"
    own.write_text(resolve_profile_text("renke/dust-all-in-one.yaml").replace(
        "name: renke-dust-all-in-one", "name: site-dust").replace(
        "  tsp:            {table: holding, address: 0x0203, type: uint16,",
        "  tsp:            {table: holding, address: 0x0203, type: uint16, invalid: [0xFFFF],"))
    slave = SimSlave(unit=1, profile=resolve_profile(str(own)), override={"pm10": 4000},
                     raw={("holding", 0x0203): 0xFFFF})
    sim = SimRunner([slave], "tcp").start()
    collector = Collector(broker.port, host=broker.host).start()
    cfg = meter_config(tmp_path, sim.tcp_port, broker, profile=str(own))
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(collector.readings("meter-1")) >= 3, 30, "3 readings")
        broker.stop()  # what waits in the buffer keeps the same quality: export it
        wait_for(lambda: committed(tmp_path) >= 3, 30, "readings buffered while the broker is down")
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
        broker.start()
    assert rc == 0, agent.log()
    for r in collector.readings("meter-1"):
        assert r.status == "partial" and r.errors == {"tsp": "invalid"}, r
        assert r.values["pm10"] == 4000 and r.flags == {"pm10": "over_range"}, r  # kept, flagged
        assert "tsp" not in r.values
    export = tmp_path / "out.jsonl"
    x = edge_agent("buffer", "export", "-c", str(cfg), "--format", "jsonl", "-o", str(export))
    assert x.returncode == 0, x.stderr
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) >= 3 and all(r["status"] == "partial" and r["errors"] == {"tsp": "invalid"}
                                  and r["flags"] == {"pm10": "over_range"} for r in rows), rows


def committed(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "data" / "outbox.db") as db:
        return int(db.execute("SELECT count(*) FROM readings").fetchone()[0])

def resolve_profile_text(rel: str) -> str:
    return (Path(__file__).resolve().parents[1] / "drivers" / "profiles" / rel).read_text(encoding="utf-8")
