"""Thousands of polls on a bus full of faults: never a wrong value, every failure typed.

Real parts: pymodbus servers (our simulator) on a socat pty pair and on TCP with RTU framing,
our ModbusBus/ModbusDevice as the master. Each slave has one fault at a rate, so each failed
reading must carry that fault's status; one slave is clean and must never fail. Values are
checked against what the simulator served, point by point and per answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from drivers.catalog import resolve_profile
from drivers.errors import DriverError
from drivers.modbus.bus import ModbusBus
from drivers.modbus.device import ModbusDevice
from drivers.modbus.simulator.runner import Line, SimRunner
from drivers.modbus.simulator.server import Fault, SimSlave

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs each timeout; we count them

TIMEOUT = 0.15
SLOW = 0.35  # answers after both attempts (2 timeouts), but within the late window (3 timeouts)
BAUD = 115200  # the pty ignores it; it sets the inter-frame delay (1.75 ms)

# unit: (profile, faults with their rate, statuses a failed reading may have)
SITE: dict[int, tuple[str, dict[Fault, float], set[str]]] = {
    1: ("renke-dust-all-in-one", {}, set()),
    2: ("eastron-sdm120", {"slow": 0.05}, {"timeout"}),  # 5 requests of one shape: late answers bite
    3: ("generic-radar-level-80ghz", {"bad_crc": 0.1}, {"crc_error"}),
    4: ("renke-rs-ws-n01", {"garbage": 0.1}, {"garbage"}),
    5: ("generic-submersible-level-transmitter", {"short": 0.1}, {"short_frame"}),
    6: ("chint-dtsu666", {"exception": 0.03}, {"exception_04"}),
    7: ("generic-tipping-bucket-rain-gauge", {"dead": 0.05}, {"timeout"}),
    8: ("eastron-sdm630", {"bad_crc": 0.02, "garbage": 0.02, "short": 0.02, "exception": 0.02, "dead": 0.01,
                         "slow": 0.01}, {"crc_error", "garbage", "short_frame", "exception_04", "timeout"}),
}


@dataclass
class Tally:
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)


def make_slaves() -> list[SimSlave]:
    slaves = []
    for unit, (profile, faults, _) in SITE.items():
        s = SimSlave(unit=unit, profile=resolve_profile(profile), slow_seconds=SLOW)
        s.faults = dict(faults)
        slaves.append(s)
    return slaves


def make_bus(sim: SimRunner, line: Line) -> ModbusBus:
    if line == "pty":
        return ModbusBus("storm", "serial", port=sim.port, baudrate=BAUD, timeout=TIMEOUT)
    host, port = sim.port.rsplit(":", 1)
    return ModbusBus("storm", "rtu-over-tcp", host=host, tcp_port=int(port), timeout=TIMEOUT)


async def hammer(device: ModbusDevice, slave: SimSlave, tally: Tally, until: float) -> None:
    """Poll back to back; check every ok reading against what the slave served."""
    while time.monotonic() < until:
        try:
            polled = await device.read()
        except DriverError as exc:
            tally.failed[exc.status] += 1
            continue
        for status in set(polled.errors.values()):  # a request of the poll failed: its points only
            tally.failed[status] += 1
        tally.ok += 1
        values = polled.values
        for req in device.plan:
            if any(name in polled.errors for name in req.points):
                assert all(name in polled.errors for name in req.points), (req, polled)
                continue
            group = {name: values[name] for name in req.points}
            if not slave.was_served_together(group) or not all(slave.was_served(n, v) for n, v in group.items()):
                tally.wrong.append(f"unit {device.unit} {req.table}@{req.address}: {group}")


async def storm(line: Line, seconds: float) -> tuple[dict[int, Tally], ModbusBus, SimRunner]:
    sim = SimRunner(make_slaves(), line, baudrate=BAUD).start()
    bus = make_bus(sim, line)
    try:
        devices = {u: ModbusDevice(bus, u, sim.slave(u).profile) for u in SITE}
        tallies = {u: Tally() for u in SITE}
        until = time.monotonic() + seconds
        await asyncio.wait_for(asyncio.gather(*(hammer(devices[u], sim.slave(u), tallies[u], until) for u in SITE)),
                               seconds + 10)
        # the storm is over: every slave answers at once, nothing stale is taken for an answer
        for u in SITE:
            sim.slave(u).set_fault("none")
        await asyncio.sleep(3 * TIMEOUT)  # answers owed by slow slaves arrive or are given up
        for u, dev in devices.items():
            polled = await asyncio.wait_for(dev.read(), 2)
            assert not polled.errors, (u, polled)
            values = polled.values
            assert all(sim.slave(u).was_served(n, v) for n, v in values.items()), (u, values)
    finally:
        await bus.close()
        sim.stop()
    return tallies, bus, sim


def check(tallies: dict[int, Tally], bus: ModbusBus, min_readings: int) -> None:
    total = sum(t.ok + sum(t.failed.values()) for t in tallies.values())
    summary = {u: (t.ok, dict(t.failed)) for u, t in tallies.items()}
    print(f"readings: {total}, attempts: {bus.stats.transactions}, failed attempts: {dict(bus.stats.by_status)}, "
          f"line: {bus.line.stats if bus.line else None}\nper unit (ok, failed): {summary}")
    assert total >= min_readings, summary
    wrong = [w for t in tallies.values() for w in t.wrong]
    assert not wrong, f"{len(wrong)} wrong values, e.g. {wrong[:5]}"
    for unit, (_, _, allowed) in SITE.items():
        t = tallies[unit]
        attempts = {status for (u, status) in bus.stats.by_unit if u == unit}
        assert t.ok > 0, (unit, summary)
        assert set(t.failed) <= allowed, f"unit {unit}: readings failed with {dict(t.failed)}, only {allowed} injected"
        assert attempts <= allowed, f"unit {unit}: attempts failed with {attempts}, only {allowed} injected"
        if len(allowed) == 1:
            assert attempts == allowed, f"unit {unit}: {allowed} injected but never reported"
    # every kind of fault was seen on the wire and typed as itself
    for status in ("crc_error", "garbage", "short_frame", "exception_04", "timeout"):
        assert bus.stats.by_status[status] > 0, dict(bus.stats.by_status)


def test_fault_storm_on_a_pty_line_gives_no_wrong_value() -> None:
    tallies, bus, sim = asyncio.run(storm("pty", 14.0))
    check(tallies, bus, min_readings=1000)
    assert bus.line is not None
    # late answers of the slow slaves were recognised, and same-shaped requests held back for them
    assert bus.line.stats.late_frames > 0 and bus.line.stats.held_back > 0, bus.line.stats
    injected = Counter[str]()
    for s in sim.slaves:
        injected.update(s.injected)
    assert min(injected[f] for f in ("bad_crc", "garbage", "short", "exception", "dead", "slow")) >= 5, injected


def test_fault_storm_on_rtu_over_tcp_gives_no_wrong_value() -> None:
    tallies, bus, _ = asyncio.run(storm("rtu-over-tcp", 5.0))
    check(tallies, bus, min_readings=300)


@pytest.mark.parametrize("fault,status", [("bad_crc", "crc_error"), ("garbage", "garbage"),
                                          ("short", "short_frame"), ("exception", "exception_04"),
                                          ("dead", "timeout")])
def test_each_fault_is_reported_as_its_own_status_quickly(fault: Fault, status: str) -> None:
    """A bad frame is judged when it is complete or the line falls quiet, not after the timeout."""

    async def run() -> tuple[str, float]:
        slave = SimSlave(unit=1, profile=resolve_profile("renke-dust-all-in-one"))
        slave.set_fault(fault)
        with SimRunner([slave], "pty") as sim:
            bus = ModbusBus("b", "serial", port=sim.port, timeout=0.5, retries=0)
            dev = ModbusDevice(bus, 1, slave.profile)
            t0 = time.perf_counter()
            try:
                await dev.read()
            except DriverError as exc:
                return exc.status, time.perf_counter() - t0
            finally:
                await bus.close()
        raise AssertionError("the faulty read succeeded")

    got, seconds = asyncio.run(run())
    assert got == status
    if fault != "dead":
        assert seconds < 0.25, f"{fault}: {seconds:.3f}s, the 0.5 s timeout was waited out"


@pytest.mark.parametrize("slow", [0.2, 0.35])
def test_a_late_answer_is_never_taken_for_the_next_request(slow: float) -> None:
    """sdm120's plan is five reads of 2 input registers: a late answer fits any of them.

    The slave answers 10 % of requests after ``slow`` s (after one or both attempts timed out);
    the bus must neither take a late answer for a different request nor stall. (With the bus's
    late window cut to one timeout this test sees power factors read as active power.)"""

    async def run() -> tuple[Tally, ModbusBus]:
        slave = SimSlave(unit=2, profile=resolve_profile("eastron-sdm120"), slow_seconds=slow)
        slave.faults = {"slow": 0.1}
        tally = Tally()
        with SimRunner([slave], "pty", baudrate=BAUD) as sim:
            bus = make_bus(sim, "pty")
            try:
                await hammer(ModbusDevice(bus, 2, slave.profile), slave, tally, time.monotonic() + 2.5)
            finally:
                await bus.close()
        return tally, bus

    tally, bus = asyncio.run(run())
    assert bus.line is not None
    print(f"slow {slow}: ok {tally.ok}, failed {dict(tally.failed)}, {bus.line.stats}")
    assert not tally.wrong, tally.wrong[:5]
    assert tally.ok >= 5 and set(tally.failed) <= {"timeout"}, (tally.ok, tally.failed)
    assert bus.line.stats.late_frames > 0 and bus.line.stats.held_back > 0, bus.line.stats
