"""Simulated Modbus slaves built from catalog profiles, served over a pty, TCP or RTU over TCP.

The register image of each slave is computed from its profile's points at the moment of
each request, so values drift as the ``sim:`` blocks say. Faults can be injected per unit,
and changed while serving (assign ``fault``/``faults``, or :meth:`SimSlave.set_fault`):

- ``dead``: no answer; ``slow``: the answer comes after ``slow_seconds``;
- ``exception``: an exception response with ``exception_code``;
- ``bad_crc``: the answer with its CRC broken; ``short``: the first half of the answer only;
- ``garbage``: random bytes (never starting with the unit's address) instead of the answer.

The last three damage RTU frames; on Modbus TCP (no CRC, and TCP does not garble) they do
not apply and the slave answers normally. ``fault_rate`` is the fraction of requests the
fault hits; ``faults`` instead draws each request's fault from a weight table.

Writes (FC05/06/15/16) to a point's registers set an override that sticks: the slave serves
the written value from then on. A point whose ``sim:`` names ``switched_by`` (a relay) reads
about 0 while that point is off; ``dimmed_by`` (a 0-100 % level) scales it by that level,
so a lamp controller's current and power follow its relay and dimming. Every request, reads
and writes (``("write:holding", address, count)``), is kept in ``request_log``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType

from ...reading import Value
from ...simulator.values import PointSimulator
from ..datatypes import BIT_TABLES, PointDecoder, encode
from ..points import ModbusProfile as Profile
from ..wire import rtu_gap_seconds
from .pymodbus_adapter import SimSerialServer, SimTcpServer, TracePacket

log = logging.getLogger(__name__)

FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding",
            15: "coil", 16: "holding"}
HISTORY = 2000  # values kept per point, so tests can check what was served
Fault = Literal["none", "dead", "exception", "slow", "bad_crc", "garbage", "short"]
FAULTS: tuple[Fault, ...] = ("none", "dead", "exception", "slow", "bad_crc", "garbage", "short")
FRAME_FAULTS = frozenset({"bad_crc", "garbage", "short"})


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
    faults: dict[Fault, float] = field(default_factory=dict)  # or: each fault's probability per request
    requests: int = 0
    served: dict[str, float | bool | str] = field(default_factory=dict)
    history: dict[str, deque[float | bool | str]] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)  # faults applied, by kind
    # a hole in the register map: requests touching (table, first, last) answer exception 02
    refuse: list[tuple[str, int, int]] = field(default_factory=list)
    override: dict[str, float | bool | str] = field(default_factory=dict)  # served instead of the sim's value
    raw: dict[tuple[str, int], int] = field(default_factory=dict)  # register words served as they are
    request_log: deque[tuple[str, int, int]] = field(default_factory=lambda: deque(maxlen=HISTORY))

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
        self._rng = random.Random(self.unit * 7919 + self.seed)
        self.answers: deque[dict[str, float | bool | str]] = deque(maxlen=HISTORY)

    def set_fault(self, fault: Fault, rate: float = 1.0) -> None:
        """Change the fault while serving (safe from another thread: plain attribute writes)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault '{fault}' (faults: {', '.join(FAULTS)})")
        self.faults = {}
        self.fault_rate = rate
        self.fault = fault

    def draw_fault(self) -> Fault:
        """The fault for one request."""
        if self.faults:
            x = self._rng.random()
            for kind, p in self.faults.items():
                if x < p:
                    return kind
                x -= p
            return "none"
        if self.fault != "none" and (self.fault_rate >= 1 or self._rng.random() < self.fault_rate):
            return self.fault
        return "none"

    def read(self, table: str, address: int, count: int, now: float, log: bool = True
             ) -> list[int] | list[bool] | None:
        """The words (or bits) at [address, address+count), None for an illegal range."""
        if log:
            self.request_log.append((table, address, count))
        ext = self.extents.get(table)
        if ext is None or address < ext[0] or address + count > ext[1]:
            return None
        if any(t == table and a <= address + count - 1 and address <= b for t, a, b in self.refuse):
            return None
        words: list[int] = [0] * count
        answer: dict[str, float | bool | str] = {}
        for name, sim in self.sims.items():
            p = self.profile.points[name]
            if (p.table or "holding") != table:
                continue
            if p.address + p.registers <= address or p.address >= address + count:
                continue
            value = self._follow(sim, self.override[name] if name in self.override else sim.value(now), now)
            self.served[name] = value
            answer[name] = value
            self.history.setdefault(name, deque(maxlen=HISTORY)).append(value)
            byte_order, word_order = self.profile.order_of(p)
            regs = encode(value, p.type_name, byte_order=byte_order, word_order=word_order,
                          scale=p.scale, offset=p.offset, length=p.length, bit=p.bit)
            for i, w in enumerate(regs):
                j = p.address - address + i
                if 0 <= j < count:
                    words[j] |= w
        for (t_, reg), word in self.raw.items():
            if t_ == table and address <= reg < address + count:
                words[reg - address] = word
        self.answers.append(answer)
        if table in BIT_TABLES:
            return [bool(w) for w in words]
        return words

    def _follow(self, sim: PointSimulator, value: float | bool | str, now: float) -> float | bool | str:
        """A value behind a relay (``switched_by``) or a dimmer (``dimmed_by``), as the sim says."""
        spec = sim.spec
        if isinstance(value, bool | str) or (spec.switched_by is None and spec.dimmed_by is None):
            return value
        if spec.switched_by is not None and not self._current(spec.switched_by, now):
            return 0.0
        if spec.dimmed_by is not None:
            value = value * max(0.0, min(100.0, float(self._current(spec.dimmed_by, now)))) / 100
        return value

    def _current(self, name: str, now: float) -> float | bool | str:
        """What point ``name`` holds now: written, last served, or the sim's value."""
        if name in self.override:
            return self.override[name]
        if name not in self.served:
            self.served[name] = self.sims[name].value(now)
        return self.served[name]

    def write(self, table: str, address: int, values: list[int] | list[bool]) -> bool:
        """Take a write of ``values`` at ``address``: every point it covers holds the written
        value from now on. False (exception 02) when it covers no point or only part of one."""
        self.request_log.append((f"write:{table}", address, len(values)))
        end = address + len(values)
        hit: dict[str, float | bool | str] = {}
        for name in self.sims:
            p = self.profile.points[name]
            if (p.table or "holding") != table or p.address + p.registers <= address or p.address >= end:
                continue
            if p.address < address or p.address + p.registers > end:
                return False  # a part of a point: a real device would refuse it too
            byte_order, word_order = self.profile.order_of(p)
            decode = PointDecoder(p.type_name, byte_order=byte_order, word_order=word_order, scale=p.scale,
                                  offset=p.offset, length=p.length, bit=p.bit)
            words = values[p.address - address : p.address - address + p.registers]
            hit[name] = decode([int(w) for w in words]) if table not in BIT_TABLES else bool(words[0])
        if not hit:
            return False
        self.override.update(hit)
        return True

    def writes(self) -> list[tuple[str, int, int]]:
        """The write requests received, oldest first: ``(table, address, count)``."""
        return [(t.removeprefix("write:"), a, n) for t, a, n in self.request_log if t.startswith("write:")]

    def was_served(self, name: str, value: float | bool | str, rel: float = 1e-5) -> bool:
        """Whether ``value`` is one the slave served for point ``name`` (float32 tolerance)."""
        return any(self._same(name, v, value, rel) for v in self.history.get(name, ()))

    def was_served_together(self, values: Mapping[str, Value], rel: float = 1e-5) -> bool:
        """Whether one single answer of the slave held all of ``values`` (a stricter check)."""
        names = list(values)
        return any(all(n in a and self._same(n, a[n], values[n], rel) for n in names) for a in self.answers)

    def _same(self, name: str, served: float | bool | str, value: Value, rel: float) -> bool:
        if isinstance(served, str | bool) or isinstance(value, str):
            return served == value
        return abs(float(served) - float(value)) <= max(abs(float(served)) * rel, self._resolution(name))

    def _resolution(self, name: str) -> float:
        """What the register encoding can represent: an integer register step times the scale."""
        p = self.profile.points[name]
        if p.type_name in ("float32", "float64"):
            return 1e-6
        return abs(p.scale) * 0.5 + 1e-9


class SimContext:
    """The datastore pymodbus asks: routes each request to a slave and applies faults.

    Each request's fault is drawn where the request is handled (``async_getValues`` /
    ``async_setValues``); a fault that damages the answer frame is kept for that slave
    until its answer passes :meth:`answer_tracer` (the servers' ``trace_packet`` hook).
    A slave answers one request at a time (:meth:`busy`), so the fault kept is always its
    current answer's.

    ``baudrate``: emulate the wire time of each transaction at that speed (None: answer at
    once); the request, the slave's turnaround gap and the answer are waited out before the
    answer is written, so on a pty a transaction takes as long as on a real line.
    """

    def __init__(self, slaves: list[SimSlave], baudrate: int | None = None, bits_per_char: int = 10) -> None:
        self.slaves = {s.unit: s for s in slaves}
        self.baudrate = baudrate
        self.bits_per_char = bits_per_char
        self._warned: set[str] = set()
        self._busy: dict[int, asyncio.Lock] = {}
        self._frame_fault: dict[int, Fault] = {}  # by unit: the fault its answer being prepared carries

    def busy(self, unit: int) -> asyncio.Lock:
        """Held while a slave prepares and sends an answer."""
        lock = self._busy.get(unit)
        if lock is None:
            lock = self._busy[unit] = asyncio.Lock()
        return lock

    def device_ids(self) -> list[int]:
        return list(self.slaves)

    def emulated_seconds(self, request_bytes: int, response_bytes: int) -> float:
        """What the slave waits before writing its answer: both frames and one gap on the wire.

        The master's own inter-frame delay after the answer is the transaction's second gap."""
        if not self.baudrate:
            return 0.0
        return (request_bytes + response_bytes) * self.bits_per_char / self.baudrate + rtu_gap_seconds(self.baudrate)

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1
                              ) -> list[int] | list[bool] | ExcCodes:
        slave = self.slaves.get(device_id)
        if slave is None:
            raise NoSuchIdException(f"no unit {device_id}")
        slave.requests += 1
        fault: Fault = "none"
        if func_code not in (5, 6):  # the answer to a write: its fault was drawn for the write
            fault = self._fault(slave)
            if fault == "exception":
                return ExcCodes(slave.exception_code)
        table = FC_TABLE.get(func_code)
        answer: list[int] | list[bool] | ExcCodes = ExcCodes.ILLEGAL_FUNCTION
        if table is not None:
            # FC05/06 answer with what the write left there: not a read of its own
            words = slave.read(table, address, count, time.time(), log=func_code not in (5, 6))
            answer = ExcCodes.ILLEGAL_ADDRESS if words is None else words
        if fault == "slow":  # the values are taken now, the answer comes late
            await asyncio.sleep(slave.slow_seconds)
        return answer

    def _fault(self, slave: SimSlave) -> Fault:
        """Draw the fault for one request (raises NoSuchIdException for a dead slave: no answer)."""
        fault = slave.draw_fault()
        if fault != "none":
            slave.injected[fault] = slave.injected.get(fault, 0) + 1
        if fault == "dead":
            raise NoSuchIdException(f"unit {slave.unit} is dead")
        self._frame_fault[slave.unit] = fault
        return fault

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: list[int] | list[bool]) -> ExcCodes | None:
        slave = self.slaves.get(device_id)
        if slave is None:
            raise NoSuchIdException(f"no unit {device_id}")
        slave.requests += 1
        fault = self._fault(slave)
        if fault == "exception":
            return ExcCodes(slave.exception_code)
        table = FC_TABLE.get(func_code)
        answer: ExcCodes | None = ExcCodes.ILLEGAL_FUNCTION
        if table in ("coil", "holding"):
            answer = None if slave.write(table, address, values) else ExcCodes.ILLEGAL_ADDRESS
        if fault == "slow":
            await asyncio.sleep(slave.slow_seconds)
        return answer

    def answer_tracer(self, rtu: bool) -> TracePacket:
        """The servers' ``trace_packet`` hook: puts each answer on the line as its slave's fault has it."""

        def trace_packet(sending: bool, packet: bytes) -> bytes:
            if not sending or len(packet) < (2 if rtu else 8):
                return packet
            unit = packet[0] if rtu else packet[6]  # RTU: address first; Modbus TCP: after the MBAP header
            return self.damage(packet, self._frame_fault.pop(unit, "none"), unit, rtu)

        return trace_packet

    def damage(self, frame: bytes, fault: Fault, unit: int, rtu: bool) -> bytes:
        """The frame as the faulty slave ``unit`` puts it on the line."""
        if fault not in FRAME_FAULTS:
            return frame
        if not rtu:
            if fault not in self._warned:
                self._warned.add(fault)
                log.warning("fault %s has no meaning on Modbus TCP; answering normally", fault)
            return frame
        if fault == "bad_crc":
            return frame[:-2] + bytes((frame[-2] ^ 0x5A, frame[-1]))
        if fault == "short":
            return frame[: max(2, len(frame) // 2)]
        rng = random.Random()
        first = rng.choice([b for b in range(256) if b != unit])
        return bytes([first]) + rng.randbytes(max(2, len(frame) - 1))


async def start_serial_server(port: str, context: SimContext, *, baudrate: int = 9600,
                              parity: str = "N", stopbits: int = 1) -> SimSerialServer:
    """Serve ``context`` as RTU slaves on a serial port (one end of a pty pair)."""
    server = SimSerialServer(context, port=port, baudrate=baudrate, parity=parity, stopbits=stopbits,
                             trace_packet=context.answer_tracer(rtu=True))
    await server.serve_forever(background=True)
    return server


async def start_tcp_server(host: str, port: int, context: SimContext, *, rtu: bool = False) -> SimTcpServer:
    """Serve ``context`` as Modbus TCP on host:port, or with ``rtu`` as RTU frames over TCP
    (what a serial-to-Ethernet converter in transparent mode passes on)."""
    server = SimTcpServer(context, address=(host, port), framer=FramerType.RTU if rtu else FramerType.SOCKET,
                          trace_packet=context.answer_tracer(rtu))
    await server.serve_forever(background=True)
    return server
