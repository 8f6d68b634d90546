"""Simulated DL/T 645-2007 meters on a serial port (one end of a pty pair).

Each meter answers reads of its profile's data identifiers with values from the points'
``sim:`` blocks, encoded by the codec's reply encoder, and can fail on purpose: no answer,
a bad checksum, garbage, an error reply, a truncated frame, or a slow answer. Several
meters may share one line, each at its own address, as on a real RS-485 bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Literal

import serial

from ..errors import CrcError, GarbageFrame, ShortFrame
from ..reading import Value
from ..simulator.values import PointSimulator
from . import bcd, codec
from .bus import PARITIES, char_seconds
from .points import DLT645Profile as Profile

log = logging.getLogger(__name__)

Fault = Literal["none", "dead", "bad_checksum", "garbage", "error", "short", "slow"]
FAULTS: tuple[Fault, ...] = ("dead", "bad_checksum", "garbage", "error", "short", "slow")
# the common fault names (drivers/simulator/spec.py) as a meter shows them
COMMON_FAULTS: dict[str, Fault] = {"dead": "dead", "exception": "error", "slow": "slow", "bad_crc": "bad_checksum",
                                   "garbage": "garbage", "short": "short", "none": "none"}
ERR_NO_DATA = 0x02  # error byte: no requested data


@dataclass
class SimPoint:
    """One served point: its name, DI, BCD layout and the simulator of its value."""

    name: str
    di: int
    format: str
    signed: bool
    scale: float
    offset: float
    sim: PointSimulator


@dataclass
class SimMeter:
    """One simulated meter: a profile at an address, with its faults.

    ``fault`` applies to a ``fault_rate`` fraction of requests; ``faults`` instead draws
    each request's fault from a weight table (e.g. ``{"bad_checksum": 0.05}``).
    ``chunk`` splits values longer than that many bytes into follow-on frames.
    ``served`` holds the last value served per point as the meter meant it (after BCD
    rounding); ``history`` every value ever served, for checks that none is made up.
    """

    address: str
    profile: Profile
    seed: int = 0
    fault: Fault = "none"
    fault_rate: float = 1.0
    faults: dict[Fault, float] = field(default_factory=dict)
    error_code: int = ERR_NO_DATA
    slow_seconds: float = 2.0
    chunk: int | None = None
    requests: int = 0
    served: dict[str, Value] = field(default_factory=dict)
    history: dict[str, set[Value]] = field(default_factory=dict)

    def set_fault(self, fault: str, rate: float = 1.0) -> None:
        """Change the fault while serving, by the common names (``exception`` → an error reply,
        ``bad_crc`` → a bad checksum) or this simulator's own."""
        kind = COMMON_FAULTS.get(fault, fault)
        if kind != "none" and kind not in FAULTS:
            raise ValueError(f"unknown fault '{fault}' (faults: {', '.join(COMMON_FAULTS)})")
        self.fault = kind  # type: ignore[assignment]
        self.fault_rate = rate

    def __post_init__(self) -> None:
        raw = codec.address_bytes(self.address)
        if not codec.is_bcd(raw):
            raise ValueError("a simulated meter needs a full address, no wildcards")
        self.address = codec.address_text(raw)
        rng = random.Random(self.seed or int(self.address))
        self.points: dict[int, SimPoint] = {}
        for name, p in self.profile.points.items():
            if p.di is None:
                continue
            fmt, signed = bcd.item_layout(p.di, p.format, p.signed)
            di = codec.parse_di(p.di)
            self.points.setdefault(di, SimPoint(name, di, fmt, signed, p.scale, p.offset,
                                                PointSimulator(name, p, rng)))
        self._rng = random.Random(int(self.address) * 7919 + 1)
        self._pending: dict[int, list[bytes]] = {}  # DI → follow-on chunks not yet read

    def draw_fault(self) -> Fault:
        """The fault for the next request (``none`` most of the time)."""
        if self.faults:
            x = self._rng.random()
            for name, weight in self.faults.items():
                if x < weight:
                    return name
                x -= weight
            return "none"
        if self.fault != "none" and (self.fault_rate >= 1 or self._rng.random() < self.fault_rate):
            return self.fault
        return "none"

    def value_bytes(self, point: SimPoint, now: float) -> bytes:
        """The BCD bytes of the point's value now; records what was served."""
        value = point.sim.value(now)
        number = float(value) if not isinstance(value, str) else 0.0
        if point.scale != 1 or point.offset != 0:
            number = (number - point.offset) / point.scale
        limit = bcd.value_limit(point.format, point.signed)
        number = max(-limit if point.signed else 0.0, min(limit, number))
        data = bcd.encode_value(number, point.format, point.signed)
        meant = bcd.decode_value(data, point.format, point.signed)
        if point.scale != 1 or point.offset != 0:
            meant = round(meant * point.scale + point.offset, 9)
        self.served[point.name] = meant
        self.history.setdefault(point.name, set()).add(meant)
        return data

    def answer(self, request: codec.Frame, now: float) -> bytes | None:
        """The meter's reply to a request addressed to it (None: a meter stays silent)."""
        self.requests += 1
        if request.function == codec.READ_ADDRESS:
            return codec.encode_address_reply(self.address)
        if request.function not in (codec.READ, codec.READ_FOLLOW) or len(request.data) < 4:
            return codec.encode_error_reply(self.address, 0x01, function=request.function)
        di = int.from_bytes(request.data[:4], "little")
        if request.function == codec.READ_FOLLOW:
            return self._follow_on(di, request.data[4:5], request.function)
        point = self.points.get(di)
        if point is None:
            return codec.encode_error_reply(self.address, ERR_NO_DATA)
        data = self.value_bytes(point, now)
        if self.chunk is None or len(data) <= self.chunk:
            return codec.encode_read_reply(self.address, di, data)
        parts = [data[i : i + self.chunk] for i in range(0, len(data), self.chunk)]
        self._pending[di] = parts[1:]
        return codec.encode_read_reply(self.address, di, parts[0], more=True)

    def _follow_on(self, di: int, seq_byte: bytes, function: int) -> bytes:
        parts = self._pending.get(di)
        if not parts or not seq_byte:
            return codec.encode_error_reply(self.address, ERR_NO_DATA, function=function)
        part = parts.pop(0)
        return codec.encode_read_reply(self.address, di, part, more=bool(parts), seq=seq_byte[0])

    def corrupt(self, reply: bytes, fault: Fault) -> bytes | None:
        """``reply`` as the fault would put it on the wire (None: nothing at all)."""
        if fault == "dead":
            return None
        if fault == "bad_checksum":  # line noise: one bit flipped in the data or checksum
            out = bytearray(reply)
            length = out[reply.index(codec.START) + 9]
            i = self._rng.randrange(len(out) - 2 - length, len(out) - 1)
            out[i] ^= 1 << self._rng.randrange(8)
            return bytes(out)
        if fault == "garbage":
            return bytes(self._rng.getrandbits(8) for _ in range(len(reply)))
        if fault == "short":
            return reply[: self._rng.randrange(1, len(reply) - 1)]
        if fault == "error":
            return codec.encode_error_reply(self.address, self.error_code)
        return reply


class DLT645Simulator:
    """Serves simulated meters on a serial port until :meth:`stop`.

    With ``emulate_wire_time`` each reply waits its wire time at the line's baud rate
    (a pty delivers at once), so timings look like a real 2400-baud line. With ``echo``
    every request comes back before its reply, as from an adapter that hears itself.
    """

    def __init__(self, port: str, meters: list[SimMeter], *, baudrate: int = 2400,
                 parity: str = "E", stopbits: int = 1, emulate_wire_time: bool = False,
                 echo: bool = False) -> None:
        self.port = port
        self.meters = {codec.address_bytes(m.address): m for m in meters}
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.char_seconds = char_seconds(baudrate, parity, stopbits)
        self.emulate_wire_time = emulate_wire_time
        self.echo = echo
        self.frames_in = 0
        self.bad_frames_in = 0
        self._serial: serial.Serial | None = None
        self._rx = bytearray()
        self._rx_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def meter(self, address: str) -> SimMeter:
        return self.meters[codec.address_bytes(address)]

    async def start(self) -> None:
        self._serial = serial.Serial(self.port, baudrate=self.baudrate,
                                     parity=PARITIES[self.parity], stopbits=self.stopbits,
                                     timeout=0)
        asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_readable)
        self._task = asyncio.create_task(self._serve(), name=f"dlt645-sim {self.port}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._serial is not None:
            asyncio.get_running_loop().remove_reader(self._serial.fileno())
            self._serial.close()
            self._serial = None

    async def __aenter__(self) -> DLT645Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            self._rx += port.read(4096)
        except (OSError, serial.SerialException) as exc:
            log.warning("simulator %s: read failed, line closed: %s", self.port, exc)
            asyncio.get_running_loop().remove_reader(port.fileno())
            port.close()
            self._serial = None
        self._rx_event.set()

    async def _next_frame(self) -> bytes:
        """The next complete frame-shaped bytes from the line (noise before it dropped)."""
        while True:
            where = codec.locate_frame(self._rx)
            if where is None:
                keep = len(self._rx) - len(self._rx.rstrip(b"\xfe"))
                del self._rx[: len(self._rx) - keep]  # noise; trailing FE may be a preamble
            elif where.end is not None and len(self._rx) >= where.end:
                raw = bytes(self._rx[where.start : where.end])
                del self._rx[: where.end]
                return raw
            self._rx_event.clear()
            await self._rx_event.wait()

    async def _serve(self) -> None:
        while True:
            raw = await self._next_frame()
            if self.echo:
                self._write(raw)
            try:
                request = codec.parse_request(raw)
            except (GarbageFrame, CrcError, ShortFrame):
                self.bad_frames_in += 1
                continue  # a meter ignores what it cannot read
            self.frames_in += 1
            meter = self._addressed(request.address)
            if meter is None:
                continue
            fault = meter.draw_fault()
            if fault == "dead":
                meter.requests += 1
                continue
            reply = meter.answer(request, time.time())
            if reply is None:
                continue
            out = meter.corrupt(reply, fault)
            if out is None:
                continue
            if fault == "slow":
                await asyncio.sleep(meter.slow_seconds)
            if self.emulate_wire_time:
                await asyncio.sleep(len(out) * self.char_seconds)
            self._write(out)

    def _write(self, data: bytes) -> None:
        if self._serial is None:
            return
        try:
            self._serial.write(data)
        except (OSError, serial.SerialException) as exc:
            log.warning("simulator %s: write failed: %s", self.port, exc)

    def _addressed(self, address: bytes) -> SimMeter | None:
        """The meter a request is for: exact address, or the first a wildcard matches."""
        if address in self.meters:
            return self.meters[address]
        if address == codec.address_bytes(codec.BROADCAST_ADDRESS):
            return None  # broadcasts get no answer
        for own, meter in self.meters.items():
            if codec.address_matches(address, own):
                return meter
        return None

