"""The simulator: every catalog profile served, a second RTU implementation agrees with it,
wire time emulated, faults changed while serving; and the buses' timing on top of it.

Real parts: pymodbus servers on socat pty pairs and TCP; minimalmodbus as an independent
RTU master; ``edge-agent simulate`` as a process. Runtime about 12 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import minimalmodbus
import pytest

from drivers.catalog import catalog, load_profile_file, resolve_profile
from drivers.errors import DriverError
from drivers.modbus.bus import ModbusBus, rtu_wire_seconds
from drivers.modbus.device import ModbusDevice
from drivers.modbus.planner import ReadRequest
from drivers.modbus.points import ModbusPoint as Point
from drivers.modbus.points import ModbusProfile as Profile
from drivers.modbus.simulator.runner import SimRunner
from drivers.modbus.simulator.server import SimSlave
from drivers.modbus.wire import crc_ok, with_crc
from tests.helpers import read_all, wait_for

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

ROOT = Path(__file__).resolve().parents[1]
MODBUS_PROFILES = sorted(n for n in catalog() if resolve_profile(n).protocol == "modbus")

CONSTANTS = """\
name: test-constants
vendor: Test
model: C-1
protocol: modbus
points:
  temperature: {table: holding, address: 10, type: int16, scale: 0.1, sim: {pattern: constant, value: -12.5}}
  pressure:    {table: holding, address: 11, type: float32, sim: {pattern: constant, value: 101.325}}
  flow:        {table: input, address: 0, type: uint32, sim: {pattern: constant, value: 123456}}
  tag:         {table: holding, address: 20, type: string, length: 4, unit: "", sim: {pattern: constant, value: EA-01}}
  lamp_on:     {table: coil, address: 0, type: bool, sim: {pattern: constant, value: true}}
"""


def ten_registers() -> Profile:
    points = {f"r{i}": Point(table="holding", address=i, unit="") for i in range(10)}
    return Profile(name="ten-registers", vendor="Test", model="T-10", points=points)


def serial_bus(sim: SimRunner, **kw: float) -> ModbusBus:
    return ModbusBus("line", "serial", port=sim.port, baudrate=sim.baudrate, **kw)  # type: ignore[arg-type]


async def read_all_twice(line: str, sim: SimRunner) -> dict[str, dict[str, object]]:
    if line == "pty":
        bus = serial_bus(sim)
    else:
        host, port = sim.port.rsplit(":", 1)
        bus = ModbusBus("lan", line, host=host, tcp_port=int(port))  # type: ignore[arg-type]
    out = {}
    try:
        for unit, slave in sim.context.slaves.items():
            dev = ModbusDevice(bus, unit, slave.profile)
            for _ in range(2):
                values = await read_all(dev)
                assert set(values) == set(slave.profile.points), slave.profile.name
                for req in dev.plan:
                    group = {n: values[n] for n in req.points}
                    assert slave.was_served_together(group), (slave.profile.name, group)
            out[slave.profile.name] = values
    finally:
        await bus.close()
    return out


@pytest.mark.parametrize("line", ["pty", "tcp", "rtu-over-tcp"])
def test_every_catalog_profile_is_served_and_reads_back(line: str) -> None:
    slaves = {unit: name for unit, name in enumerate(MODBUS_PROFILES, start=1)}
    assert len(slaves) >= 8
    with SimRunner(slaves, line, baudrate=115200) as sim:  # type: ignore[arg-type]
        values = asyncio.run(read_all_twice(line, sim))
    assert set(values) == set(MODBUS_PROFILES)


def test_minimalmodbus_reads_what_the_simulator_serves_and_what_our_bus_decodes(tmp_path: Path) -> None:
    path = tmp_path / "constants.yaml"
    path.write_text(CONSTANTS)
    profile = load_profile_file(path)
    with SimRunner([SimSlave(unit=7, profile=profile)], "pty") as sim:
        mm = minimalmodbus.Instrument(sim.port, 7, mode=minimalmodbus.MODE_RTU)
        mm.serial.baudrate = 9600
        mm.serial.timeout = 0.5
        try:
            raw = mm.read_registers(10, 3)
            theirs = {
                "temperature": mm.read_register(10, number_of_decimals=1, signed=True),
                "pressure": mm.read_float(11),
                "flow": mm.read_long(0, functioncode=4),
                "tag": mm.read_string(20, 4).rstrip("\x00"),
                "lamp_on": bool(mm.read_bit(0, functioncode=1)),
            }
        finally:
            mm.serial.close()

        async def ours() -> tuple[list[int] | list[bool], dict[str, object]]:
            bus = serial_bus(sim)
            try:
                words = await bus.read(7, ReadRequest("holding", 10, 3, ()))
                return words, await read_all(ModbusDevice(bus, 7, profile))
            finally:
                await bus.close()

        words, values = asyncio.run(ours())
    assert raw == words
    assert theirs["temperature"] == values["temperature"] == -12.5
    assert theirs["pressure"] == pytest.approx(101.325, rel=1e-6) and values["pressure"] == pytest.approx(101.325)
    assert theirs["flow"] == values["flow"] == 123456
    assert theirs["tag"] == values["tag"] == "EA-01"
    assert theirs["lamp_on"] is True and values["lamp_on"] is True


@pytest.mark.parametrize("fault,error,text", [
    ("bad_crc", minimalmodbus.InvalidResponseError, "Checksum error"),
    ("short", minimalmodbus.InvalidResponseError, ""),
    ("garbage", minimalmodbus.InvalidResponseError, ""),
    ("exception", minimalmodbus.SlaveReportedException, "failure"),
    ("dead", minimalmodbus.NoResponseError, ""),
])
def test_minimalmodbus_sees_each_injected_fault_for_what_it_is(fault: str, error: type[Exception], text: str) -> None:
    slave = SimSlave(unit=1, profile=resolve_profile("generic-radar-level-80ghz"))
    with SimRunner([slave], "pty") as sim:
        mm = minimalmodbus.Instrument(sim.port, 1)
        mm.serial.timeout = 0.3
        try:
            assert len(mm.read_registers(0, 7)) == 7
            slave.set_fault(fault)  # type: ignore[arg-type]
            with pytest.raises(error) as caught:
                mm.read_registers(0, 7)
            assert text in str(caught.value)
            slave.set_fault("none")
            time.sleep(0.05)
            mm.serial.reset_input_buffer()
            assert len(mm.read_registers(0, 7)) == 7
        finally:
            mm.serial.close()


def test_rtu_over_tcp_speaks_rtu_frames_on_the_socket() -> None:
    """What a transparent serial-to-Ethernet converter carries: no MBAP header, a CRC."""
    with SimRunner({3: "generic-radar-level-80ghz"}, "rtu-over-tcp") as sim, \
            socket.create_connection(("127.0.0.1", sim.tcp_port), timeout=2) as s:
        s.sendall(with_crc(bytes([3, 3, 0, 0, 0, 7])))
        data = b""
        while len(data) < 19:
            data += s.recv(64)
    assert data[:3] == bytes([3, 3, 14]) and len(data) == 19 and crc_ok(data)


def mbap_read(tid: int, unit: int, address: int, count: int) -> bytes:
    """A Modbus TCP request: read ``count`` holding registers at ``address``."""
    return tid.to_bytes(2, "big") + bytes([0, 0, 0, 6, unit, 3]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")


@pytest.mark.parametrize("one_packet", [False, True], ids=["two-packets", "one-packet"])
def test_a_late_answer_goes_out_under_its_own_request(one_packet: bool) -> None:
    """Unit 1 answers late; unit 2's request comes meanwhile (in its own TCP packet, or in
    the same one: both are answered). Each answer carries its own request's transaction id
    and unit id (the late one must not take the next request's, which a master would read
    as unit 2's value)."""
    with SimRunner([SimSlave(unit=1, profile=ten_registers(), fault="slow", slow_seconds=0.4),
                    SimSlave(unit=2, profile=ten_registers())], "tcp") as sim, \
            socket.create_connection(("127.0.0.1", sim.tcp_port), timeout=3) as s:
        if one_packet:
            s.sendall(mbap_read(7, 1, 0, 2) + mbap_read(8, 2, 0, 3))
        else:
            s.sendall(mbap_read(7, 1, 0, 2))
            time.sleep(0.1)
            s.sendall(mbap_read(8, 2, 0, 3))
        data = b""
        while len(data) < (9 + 6) + (9 + 4):
            data += s.recv(256)
    first, second = data[:15], data[15:]  # unit 2's answer (3 registers) comes first, unit 1's late
    assert (int.from_bytes(first[:2], "big"), first[6], first[8]) == (8, 2, 6)
    assert (int.from_bytes(second[:2], "big"), second[6], second[8]) == (7, 1, 4)
    assert sim.slave(1).injected == {"slow": 1} and sim.slave(2).requests == 1


async def timed_reads_on(sim: SimRunner, unit: int, n: int) -> list[float]:
    bus = serial_bus(sim)
    try:
        return await timed_reads(bus, unit, n)
    finally:
        await bus.close()


async def timed_reads(bus: ModbusBus, unit: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await bus.read(unit, ReadRequest("holding", 0, 10, ()))
        out.append(time.perf_counter() - t0)
    return out


@pytest.mark.parametrize("baudrate", [9600, 19200])
@pytest.mark.slow
def test_wire_time_of_a_10_register_read_is_emulated(baudrate: int) -> None:
    limit = rtu_wire_seconds(8, 25, baudrate)
    if baudrate == 9600:
        assert limit == pytest.approx(0.0424, abs=0.0005)  # DESIGN: ~42 ms on the wire
    with SimRunner([SimSlave(unit=1, profile=ten_registers())], "pty", baudrate=baudrate, emulate_timing=True) as sim:
        times = asyncio.run(timed_reads_on(sim, 1, 10))
    median = statistics.median(times)
    assert limit <= median <= limit + 0.008, f"{median * 1000:.1f} ms per read, the wire needs {limit * 1000:.1f} ms"


@pytest.mark.slow
def test_one_bus_is_strictly_serialised_and_two_buses_run_side_by_side() -> None:
    limit = rtu_wire_seconds(8, 25, 9600)

    async def run(a: SimRunner, b: SimRunner) -> tuple[float, float]:
        bus_a, bus_b = serial_bus(a), serial_bus(b)
        try:
            t0 = time.perf_counter()
            await asyncio.gather(timed_reads(bus_a, 1, 5), timed_reads(bus_a, 2, 5))  # one line, two slaves
            one = time.perf_counter() - t0
            t0 = time.perf_counter()
            await asyncio.gather(timed_reads(bus_a, 1, 5), timed_reads(bus_b, 1, 5))  # two lines
            two = time.perf_counter() - t0
        finally:
            await bus_a.close()
            await bus_b.close()
        return one, two

    slaves = lambda: [SimSlave(unit=u, profile=ten_registers()) for u in (1, 2)]  # noqa: E731
    with SimRunner(slaves(), "pty", emulate_timing=True) as a, SimRunner(slaves(), "pty", emulate_timing=True) as b:
        one, two = asyncio.run(run(a, b))
    assert one >= 10 * limit, f"10 reads on one line in {one:.3f}s: they overlapped"
    assert two < 7 * limit, f"5 reads on each of two lines took {two:.3f}s: the lines waited for each other"


def test_the_inter_frame_delay_separates_every_transaction() -> None:
    with SimRunner({1: "generic-radar-level-80ghz"}, "tcp") as sim:

        async def run() -> float:
            bus = ModbusBus("lan", "tcp", host="127.0.0.1", tcp_port=sim.tcp_port, inter_frame_delay=0.05)
            dev = ModbusDevice(bus, 1, sim.slave(1).profile)
            t0 = time.perf_counter()
            await asyncio.gather(*(dev.read() for _ in range(6)))
            await bus.close()
            return time.perf_counter() - t0

        assert asyncio.run(run()) >= 6 * 0.05


@pytest.mark.slow
def test_simulate_changes_faults_while_serving_from_the_control_file(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "simulate", "--pty-dir", str(tmp_path),
                             "--ready-file", str(ready), "pty:1=generic-radar-level-80ghz"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    control = tmp_path / "faults"

    async def status_after(text: str | None, want: str) -> str:
        if text is not None:
            control.write_text(text)
        bus = ModbusBus("line", "serial", port=json.loads(ready.read_text())["serial"], timeout=0.3, retries=0)
        dev = ModbusDevice(bus, 1, resolve_profile("generic-radar-level-80ghz"))
        got = ""
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    await dev.read()
                    got = "ok"
                except DriverError as exc:
                    got = exc.status
                if got == want:
                    break
                await asyncio.sleep(0.1)
        finally:
            await bus.close()
        return got

    try:
        wait_for(ready.exists, 20, "the simulator to be ready")
        assert asyncio.run(status_after(None, "ok")) == "ok"
        assert asyncio.run(status_after("pty:1=exception\n", "exception_04")) == "exception_04"
        assert asyncio.run(status_after("pty:1=bad_crc  # a noisy line\n", "crc_error")) == "crc_error"
        assert asyncio.run(status_after("pty:1=dead\n", "timeout")) == "timeout"
        assert asyncio.run(status_after("# all clear\n", "ok")) == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"change faults while serving: echo 'pty:1=dead' > {control}  (pty:1=none: clear)" in out
