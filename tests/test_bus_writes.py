"""Writes on a real line: the lamp controller simulated on a pty (RTU) and over Modbus TCP,
written with FC05/06/15/16 by our bus and read back; refusals never reach the line."""

from __future__ import annotations

import asyncio

import pytest

from drivers.catalog import resolve_profile
from drivers.dlt645.bus import DLT645Bus, DLT645Device
from drivers.errors import ExceptionResponse, NoResponse, WriteRefused
from drivers.modbus.bus import ModbusBus
from drivers.modbus.device import ModbusDevice
from drivers.modbus.points import ModbusProfile as Profile
from drivers.modbus.simulator.runner import SimRunner
from drivers.modbus.simulator.server import SimSlave

LAMP = "generic-smart-pole-lamp-controller"


def lamp_sim(line: str = "pty") -> SimRunner:
    return SimRunner([SimSlave(unit=5, profile=resolve_profile(LAMP))], line).start()  # type: ignore[arg-type]


def bus_for(sim: SimRunner, line: str, **kw: float) -> ModbusBus:
    if line == "pty":
        return ModbusBus("rs485-1", "serial", port=sim.port, baudrate=sim.baudrate, **kw)  # type: ignore[arg-type]
    host, port = sim.port.rsplit(":", 1)
    return ModbusBus("lan", "tcp", host=host, tcp_port=int(port), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("line", ["pty", "tcp"])
def test_dim_and_switch_the_lamp_read_back_and_power_follows(line: str) -> None:
    sim = lamp_sim(line)
    slave = sim.slave(5)

    async def go() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        bus = bus_for(sim, line)
        try:
            lamp = ModbusDevice(bus, 5, resolve_profile(LAMP))
            dimmed = await lamp.write({"dim_level": 60, "lamp_on": True})
            lit = (await lamp.read()).values
            off = await lamp.write({"lamp_on": False})
            return dimmed, lit, {**off, **(await lamp.read()).values}
        finally:
            await bus.close()

    try:
        dimmed, lit, dark = asyncio.run(go())
    finally:
        sim.stop()
    assert dimmed == {"dim_level": 60, "lamp_on": True}
    assert lit["dim_level"] == 60 and lit["lamp_on"] is True
    assert 0.2 * 0.6 - 0.01 <= float(lit["current_l1"]) <= 0.6 * 0.6 + 0.01  # follows the 60 % dimming
    assert dark["lamp_on"] is False and dark["dim_level"] == 60
    assert dark["current_l1"] == 0 and dark["active_power"] == 0
    assert slave.writes() == [("holding", 0, 1), ("coil", 0, 1), ("coil", 0, 1)]


def test_fc15_and_fc16_when_the_profile_asks_for_them() -> None:
    profile = Profile.model_validate({
        "name": "fc16-lamp", "vendor": "T", "model": "M", "points": {
            "lamp_on": {"table": "coil", "address": 3, "type": "bool", "writable": True, "write_function": 15},
            "dim_level": {"table": "holding", "address": 8, "type": "uint16", "writable": True, "min": 0,
                          "max": 100, "write_function": 16},
            "energy_import": {"table": "holding", "address": 10, "type": "float32", "writable": True,
                              "min": 0, "max": 1e6}}})
    sim = SimRunner([SimSlave(unit=1, profile=profile)], "pty").start()

    async def go() -> dict[str, object]:
        bus = bus_for(sim, "pty")
        try:
            return await ModbusDevice(bus, 1, profile).write({"lamp_on": False, "dim_level": 7,
                                                             "energy_import": 12.5})
        finally:
            await bus.close()

    try:
        back = asyncio.run(go())
    finally:
        sim.stop()
    assert back == {"lamp_on": False, "dim_level": 7, "energy_import": 12.5}
    assert sim.slave(1).writes() == [("coil", 3, 1), ("holding", 8, 1), ("holding", 10, 2)]


def test_a_refused_value_never_reaches_the_line() -> None:
    sim = lamp_sim()

    async def go() -> None:
        bus = bus_for(sim, "pty")
        try:
            lamp = ModbusDevice(bus, 5, resolve_profile(LAMP))
            with pytest.raises(WriteRefused, match="above the maximum 100"):
                await lamp.write({"lamp_on": True, "dim_level": 101})  # the good one is not sent either
            with pytest.raises(WriteRefused, match="not writable"):
                await lamp.write({"voltage_l1": 230})
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    finally:
        sim.stop()
    assert sim.slave(5).request_log == type(sim.slave(5).request_log)()  # nothing at all on the line


@pytest.mark.parametrize(("fault", "error"), [("exception", ExceptionResponse), ("dead", NoResponse)])
def test_a_failed_write_is_a_typed_error(fault: str, error: type[Exception]) -> None:
    sim = lamp_sim()
    sim.slave(5).set_fault(fault)  # type: ignore[arg-type]

    async def go() -> None:
        bus = bus_for(sim, "pty", timeout=0.2, retries=0)
        try:
            with pytest.raises(error):
                await ModbusDevice(bus, 5, resolve_profile(LAMP)).write({"dim_level": 60})
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    finally:
        sim.stop()


def test_a_dlt645_meter_refuses_writes_without_opening_its_port() -> None:
    bus = DLT645Bus("meters", "/dev/nonexistent-port")
    meter = DLT645Device(bus, "000000000001", resolve_profile("generic-dlt645-2007"))
    with pytest.raises(WriteRefused, match="does not write to meters"):
        asyncio.run(meter.write({"energy_import": 0}))
    assert bus.stats.transactions == 0
