"""Simulated Modbus slaves built from catalog profiles, served over a pty or TCP.

The register image of each slave is computed from its profile's points at the moment of
each request, so values drift as the ``sim:`` blocks say. Faults can be injected per
unit at run time: no answer, exception code, slow answer, bad CRC, garbage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ..datatypes import BIT_TABLES, encode
from ..modbus.bus import rtu_wire_seconds
from ..profile import Profile
from .values import PointSimulator

log = logging.getLogger(__name__)

FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding",
            15: "coil", 16: "holding"}
HISTORY = 2000  # values kept per point, so tests can check what was served
Fault = Literal["none", "dead", "exception", "slow", "bad_crc", "garbage"]


@dataclass
class SimSlave:
    """One simulated device: a profile at a unit id, with its faults."""

    unit: int
    profile: Profile
    seed: int = 0
    fault: Fault = "none"
    exception_code: int = 0x04
    slow_seconds: float = 2.0
    fault_rate: float = 1.0  # fraction of requests the fault applies to
    requests: int = 0
    served: dict[str, float | bool | str] = field(default_factory=dict)
    history: dict[str, deque[float | bool | str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed or self.unit)
        self.sims = {n: PointSimulator(n, p, rng) for n, p in self.profile.points.items() if p.address is not None}
        self.extents: dict[str, tuple[int, int]] = {}
        for p in self.profile.points.values():
            if p.address is None:
                continue
            table = p.table or "holding"
            lo, hi = self.extents.get(table, (p.address, p.address + p.registers))
            self.extents[table] = (min(lo, p.address), max(hi, p.address + p.registers))
        self._rng = random.Random(self.unit * 7919)

    def faulty(self) -> bool:
        return self.fault != "none" and (self.fault_rate >= 1 or self._rng.random() < self.fault_rate)

    def read(self, table: str, address: int, count: int, now: float) -> list[int] | list[bool] | None:
        """The words (or bits) at [address, address+count), None for an illegal range."""
        ext = self.extents.get(table)
        if ext is None or address < ext[0] or address + count > ext[1]:
            return None
        words: list[int] = [0] * count
        for name, sim in self.sims.items():
            p = sim.point
            assert p.address is not None
            if (p.table or "holding") != table:
                continue
            if p.address + p.registers <= address or p.address >= address + count:
                continue
            value = sim.value(now)
            self.served[name] = value
            self.history.setdefault(name, deque(maxlen=HISTORY)).append(value)
            byte_order, word_order = self.profile.order_of(p)
            regs = encode(value, p.type_name, byte_order=byte_order, word_order=word_order,
                          scale=p.scale, offset=p.offset, length=p.length, bit=p.bit)
            for i, w in enumerate(regs):
                j = p.address - address + i
                if 0 <= j < count:
                    words[j] |= w
        if table in BIT_TABLES:
            return [bool(w) for w in words]
        return words

    def was_served(self, name: str, value: float | bool | str, rel: float = 1e-5) -> bool:
        """Whether ``value`` is one the slave served for point ``name`` (float32 tolerance)."""
        for v in self.history.get(name, ()):
            if isinstance(v, str) or isinstance(value, str) or isinstance(v, bool):
                if v == value:
                    return True
            elif abs(float(v) - float(value)) <= max(abs(float(v)) * rel, self._resolution(name)):
                return True
        return False

    def _resolution(self, name: str) -> float:
        """What the register encoding can represent: an integer register step times the scale."""
        p = self.profile.points[name]
        if p.type_name in ("float32", "float64"):
            return 1e-6
        return abs(p.scale) * 0.5 + 1e-9


class SimContext:
    """The datastore pymodbus asks: routes each request to a slave and applies faults."""

    def __init__(self, slaves: list[SimSlave], baudrate: int | None = None) -> None:
        self.slaves = {s.unit: s for s in slaves}
        self.baudrate = baudrate  # emulate wire time at this baud (None: answer at once)
        self.pending_corruption: Fault = "none"

    def device_ids(self) -> list[int]:
        return list(self.slaves)

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1
                              ) -> list[int] | list[bool] | ExcCodes:
        slave = self.slaves.get(device_id)
        if slave is None:
            raise NoSuchIdException(f"no unit {device_id}")
        slave.requests += 1
        fault = slave.fault if slave.faulty() else "none"
        if fault == "dead":
            raise NoSuchIdException(f"unit {device_id} is dead")
        if fault == "exception":
            return ExcCodes(slave.exception_code)
        if fault == "slow":
            await asyncio.sleep(slave.slow_seconds)
        if fault in ("bad_crc", "garbage"):
            self.pending_corruption = fault
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        words = slave.read(table, address, count, time.time())
        if words is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if self.baudrate:
            payload = (count + 7) // 8 if table in BIT_TABLES else 2 * count
            await asyncio.sleep(rtu_wire_seconds(8, 5 + payload, self.baudrate))
        return words

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: list[int] | list[bool]) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_FUNCTION

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Corrupt an outgoing frame when a fault asked for it."""
        if not sending or self.pending_corruption == "none":
            return data
        fault, self.pending_corruption = self.pending_corruption, "none"
        if fault == "bad_crc" and len(data) > 2:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return bytes(random.getrandbits(8) for _ in range(max(3, len(data))))


def _placeholder() -> list[SimDevice]:
    return [SimDevice(id=0, simdata=[SimData(address=0, values=0, datatype=DataType.REGISTERS)])]


async def start_serial_server(port: str, context: SimContext, *, baudrate: int = 9600,
                              parity: str = "N", stopbits: int = 1) -> ModbusSerialServer:
    """Serve ``context`` as RTU slaves on a serial port (one end of a pty pair)."""
    server = ModbusSerialServer(_placeholder(), port=port, baudrate=baudrate, parity=parity,
                                stopbits=stopbits, ignore_missing_devices=True,
                                trace_packet=context.trace_packet)
    server.context = context  # type: ignore[assignment]
    await server.serve_forever(background=True)
    return server


async def start_tcp_server(host: str, port: int, context: SimContext) -> ModbusTcpServer:
    """Serve ``context`` as Modbus TCP on host:port."""
    server = ModbusTcpServer(_placeholder(), address=(host, port), ignore_missing_devices=True,
                             trace_packet=context.trace_packet)
    server.context = context  # type: ignore[assignment]
    await server.serve_forever(background=True)
    return server
