"""Modbus RTU on the wire: timing, CRC and the shape of response frames.

Pure functions, shared by the bus (which validates what arrives), the simulator (which
emulates wire time and corrupts frames on demand) and the benchmarks (the wire-time limit).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus.framer import FramerRTU

from .datatypes import BIT_TABLES
from .planner import ReadRequest


def bits_per_char(parity: str = "N", stopbits: int = 1, bytesize: int = 8) -> int:
    """Bits one character takes on the line: start bit, data, parity, stop bits (8N1: 10)."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def rtu_gap_seconds(baudrate: int) -> float:
    """The 3.5-character silence that ends an RTU frame (fixed 1.75 ms above 19200 baud)."""
    return 0.00175 if baudrate > 19200 else 3.5 * 11 / baudrate


def rtu_wire_seconds(request_bytes: int, response_bytes: int, baudrate: int, bits_per_byte: int = 10) -> float:
    """Time on the wire for one RTU transaction: both frames plus their gaps."""
    return (request_bytes + response_bytes) * bits_per_byte / baudrate + 2 * rtu_gap_seconds(baudrate)


REQUEST_BYTES = 8  # unit, function, address (2), count (2), CRC (2)
WRITE_FUNCTIONS = (5, 6, 15, 16)  # their answer echoes address and value/count: 8 bytes
ANSWERED_FUNCTIONS = (1, 2, 3, 4, *WRITE_FUNCTIONS)


def response_bytes(req: ReadRequest) -> int:
    """Length of the RTU frame that answers ``req``: unit, function, byte count, data, CRC."""
    return 5 + data_bytes(req)


def data_bytes(req: ReadRequest) -> int:
    return (req.count + 7) // 8 if req.table in BIT_TABLES else 2 * req.count


def plan_wire_seconds(plan: list[ReadRequest], baudrate: int, bits_per_byte: int = 10) -> float:
    """The physical limit for executing a read plan once on an RTU line."""
    return sum(rtu_wire_seconds(REQUEST_BYTES, response_bytes(r), baudrate, bits_per_byte) for r in plan)


def crc16(data: bytes) -> bytes:
    """The Modbus CRC of ``data`` as it goes on the wire (low byte first): pymodbus's own."""
    return FramerRTU.compute_CRC(data).to_bytes(2, "big")


def with_crc(frame: bytes) -> bytes:
    return frame + crc16(frame)


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == frame[-2:]


# what frame_at() finds at a position of a receive buffer
NEED, FRAME, BAD = 0, 1, 2


def frame_at(buf: bytes, i: int) -> tuple[int, int]:
    """Whether a read response (fc 1-4), a write response (fc 5, 6, 15, 16: 8 bytes) or an
    exception response starts at ``buf[i]``.

    Returns ``(FRAME, n)`` for a complete frame of ``n`` bytes with a good CRC, ``(BAD, n)``
    when ``n`` bytes are there but the CRC fails or the function code is not one a read
    answers with, ``(NEED, n)`` when more bytes are needed (``n`` is a guess, 0 if unknown).
    """
    avail = len(buf) - i
    if avail < 2:
        return NEED, 0
    fc = buf[i + 1]
    if fc & 0x80:
        if (fc & 0x7F) not in ANSWERED_FUNCTIONS:
            return BAD, 2
        n = 5
    elif fc in WRITE_FUNCTIONS:
        n = 8
    elif fc in (1, 2, 3, 4):
        if avail < 3:
            return NEED, 0
        n = 5 + buf[i + 2]
    else:
        return BAD, 2
    if avail < n:
        return NEED, n
    return (FRAME if crc16(buf[i : i + n - 2]) == buf[i + n - 2 : i + n] else BAD), n


@dataclass(frozen=True, slots=True)
class Expected:
    """The answer a request asks for: who, which function, how many data bytes."""

    unit: int
    fc: int
    address: int
    count: int
    data_bytes: int

    @classmethod
    def of(cls, unit: int, req: ReadRequest) -> Expected:
        return cls(unit, req.function_code, req.address, req.count, data_bytes(req))

    @classmethod
    def of_write(cls, unit: int, fc: int, address: int, count: int) -> Expected:
        """A write's answer: an 8-byte echo (its "data bytes" are 0 in :func:`shape_of`'s terms)."""
        return cls(unit, fc, address, count, 0)

    @property
    def length(self) -> int:
        return 8 if self.fc in WRITE_FUNCTIONS else 5 + self.data_bytes

    def owns(self, fc: int, third_byte: int) -> bool:
        """Whether a frame starting with ``fc`` and ``third_byte`` is (a try at) our answer."""
        if fc == self.fc | 0x80:
            return True
        return fc == self.fc and (self.fc in WRITE_FUNCTIONS or third_byte == self.data_bytes)

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.fc, self.address, self.count)


def shape_of(frame: bytes) -> tuple[int, int]:
    """(function code, data bytes) of a complete frame; exceptions are (fc | 0x80, -1), write
    answers (fc, 0)."""
    fc = frame[1]
    if fc & 0x80:
        return (fc, -1)
    return (fc, 0) if fc in WRITE_FUNCTIONS else (fc, frame[2])


def answers(shape: tuple[int, int], fc: int, nbytes: int) -> bool:
    """Whether a frame of ``shape`` can answer a read of function ``fc`` for ``nbytes`` data bytes."""
    return shape == (fc, nbytes) or shape == (fc | 0x80, -1)
