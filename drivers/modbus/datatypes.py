"""Data types as one table: struct code, register count and what each type allows.

Validation of profiles (which options a point may carry) and decoding both derive from
``TYPES``; nothing else in the code base lists the types.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidValue, NotFinite, ShortFrame

Order = Literal["big", "little"]
Table = Literal["coil", "discrete", "holding", "input"]
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})


@dataclass(frozen=True, slots=True)
class DataType:
    name: str
    struct_code: str | None  # None: not a struct-packed number (bool, bit, string)
    registers: int | None  # registers per value; None: from the point's ``length``
    numeric: bool  # scale and offset allowed
    tables: frozenset[str]
    needs_length: bool = False
    needs_bit: bool = False


TYPES: dict[str, DataType] = {
    t.name: t
    for t in (
        DataType("bool", None, 1, False, BIT_TABLES),
        DataType("bit", None, 1, False, REGISTER_TABLES, needs_bit=True),
        DataType("uint16", "H", 1, True, REGISTER_TABLES),
        DataType("int16", "h", 1, True, REGISTER_TABLES),
        DataType("uint32", "I", 2, True, REGISTER_TABLES),
        DataType("int32", "i", 2, True, REGISTER_TABLES),
        DataType("uint64", "Q", 4, True, REGISTER_TABLES),
        DataType("int64", "q", 4, True, REGISTER_TABLES),
        DataType("float32", "f", 2, True, REGISTER_TABLES),
        DataType("float64", "d", 4, True, REGISTER_TABLES),
        DataType("string", None, None, False, REGISTER_TABLES, needs_length=True),
    )
}


def register_count(type_name: str, length: int | None = None) -> int:
    """How many registers (or bits, for bit tables) one value of this type spans."""
    t = TYPES[type_name]
    if t.registers is not None:
        return t.registers
    if length is None or length < 1:
        raise ValueError(f"type {type_name} needs a length in registers")
    return length


def bytes_to_words(data: bytes, byte_order: Order, word_order: Order) -> list[int]:
    """The registers holding the big-endian bytes of one value, in byte and word order
    (what :class:`PointDecoder` reads back)."""
    endian: Literal["big", "little"] = "big" if byte_order == "big" else "little"
    words = [int.from_bytes(data[i : i + 2], endian) for i in range(0, len(data), 2)]
    return words[::-1] if word_order == "little" else words


def step_decimals(*steps: float) -> int:
    """The decimals an integer register scaled by these steps can carry: 0.1 → 1, 0.25 → 2."""
    out = 0
    for s in steps:
        text = repr(float(s))
        if "e" in text:
            mantissa, exp = text.split("e")
            out = max(out, max(0, -int(exp)) + len(mantissa.partition(".")[2].rstrip("0")))
        else:
            out = max(out, len(text.partition(".")[2].rstrip("0")))
    return min(out, 9)


_F32 = struct.Struct(">f")


def shortest_float32(value: float, _pack: Callable[[float], bytes] = _F32.pack) -> float:
    """The shortest decimal that reads back as the same float32: 229.484, not 229.4840087890625.

    Unrolled, with %-formatting: this runs for every float32 value polled."""
    packed = _pack(value)
    short = float("%.6g" % value)  # noqa: UP031 (faster than format())
    if _pack(short) == packed:
        return short
    short = float("%.7g" % value)  # noqa: UP031
    if _pack(short) == packed:
        return short
    short = float("%.8g" % value)  # noqa: UP031
    if _pack(short) == packed:
        return short
    return float("%.9g" % value)  # noqa: UP031


class PointDecoder:
    """How to decode one point, worked out once: the poll path calls it for every value.

    Raises a typed error for a bad answer, never guesses.
    """

    __slots__ = ("_f32", "_invalid", "_places", "_reverse", "_scaled", "_value", "_words", "bit", "count", "kind",
                 "offset", "scale", "type_name")

    def __init__(self, type_name: str, *, byte_order: Order = "big", word_order: Order = "big",
                 scale: float = 1.0, offset: float = 0.0, length: int | None = None, bit: int | None = None,
                 invalid: frozenset[int] = frozenset(), decimals: int | None = None) -> None:
        t = TYPES[type_name]
        self.type_name = type_name
        self.kind = t.name
        self.count = register_count(type_name, length)
        self.bit = bit
        self.scale = scale
        self.offset = offset
        self._scaled = not (scale == 1 and offset == 0)
        # the registers as one big-endian value's bytes: each word in byte order, words in word order
        self._words = struct.Struct(("<" if byte_order == "little" else ">") + f"{self.count}H")
        self._reverse = word_order == "little"
        self._value = struct.Struct(">" + t.struct_code) if t.struct_code else None
        self._invalid = invalid  # raw register values (unsigned, as on the wire) meaning "no valid value"
        self._f32 = t.struct_code == "f" and decimals is None
        # decimals a value is rounded to: the profile's, else what the scale gives an integer register
        if decimals is None and self._scaled and t.struct_code not in ("f", "d"):
            decimals = step_decimals(scale, offset) if offset else step_decimals(scale)
        self._places = decimals

    def __call__(self, words: list[int] | list[bool]) -> int | float | bool | str:
        n = self.count
        if len(words) < n:
            raise ShortFrame(f"{self.type_name} needs {n} registers, got {len(words)}")
        kind = self.kind
        if kind == "bool":
            return bool(words[0])
        if kind == "bit":
            assert self.bit is not None
            return bool((int(words[0]) >> self.bit) & 1)
        ordered = words[:n][::-1] if self._reverse else words[:n]
        try:
            raw = self._words.pack(*ordered)
        except struct.error:  # a word outside 0..65535: keep its low 16 bits, as a register would
            raw = self._words.pack(*(int(w) & 0xFFFF for w in ordered))
        if kind == "string":
            return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
        if self._invalid and int.from_bytes(raw, "big") in self._invalid:
            raise InvalidValue(f"raw value 0x{raw.hex().upper()} means the sensor has no valid value")
        assert self._value is not None
        value = self._value.unpack(raw)[0]
        if isinstance(value, float):
            if not math.isfinite(value):
                raise NotFinite(value, f"{self.type_name} is not a finite number ({value})")
            if self._f32:
                value = shortest_float32(value)
        if self._scaled:
            value = value * self.scale + self.offset
            return self._round(value) if self._places is not None else round(value, 9)
        return self._round(value) if self._places is not None else value

    def _round(self, value: int | float) -> int | float:
        places = self._places
        if places == 0:
            return round(value)
        return round(value, places)


def decode(
    words: list[int] | list[bool],
    type_name: str,
    *,
    byte_order: Order = "big",
    word_order: Order = "big",
    scale: float = 1.0,
    offset: float = 0.0,
    length: int | None = None,
    bit: int | None = None,
) -> int | float | bool | str:
    """Decode the registers (or bits) of one point. Raises a typed error, never guesses."""
    return PointDecoder(type_name, byte_order=byte_order, word_order=word_order, scale=scale, offset=offset,
                        length=length, bit=bit)(words)


def encode(
    value: int | float | bool | str,
    type_name: str,
    *,
    byte_order: Order = "big",
    word_order: Order = "big",
    scale: float = 1.0,
    offset: float = 0.0,
    length: int | None = None,
    bit: int | None = None,
) -> list[int]:
    """The registers a device would hold for ``value`` (the simulator and fixtures use it).

    For ``bool`` the result is ``[0|1]``; for ``bit`` the single bit set in a word.
    """
    t = TYPES[type_name]
    if t.name == "bool":
        return [1 if value else 0]
    if t.name == "bit":
        assert bit is not None
        return [(1 << bit) if value else 0]
    if t.name == "string":
        n = register_count(type_name, length)
        data = str(value).encode("ascii")[: n * 2].ljust(n * 2, b"\x00")
        return bytes_to_words(data, byte_order, word_order)
    assert t.struct_code is not None
    raw = (float(value) - offset) / scale if (scale != 1 or offset != 0) else value
    if t.struct_code in "fd":
        packed = struct.pack(">" + t.struct_code, float(raw))
    else:
        bits = 8 * struct.calcsize(t.struct_code)
        lo, hi = (0, 2**bits - 1) if t.struct_code.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        # an int stays exact: float() would round 64-bit counters above 2**53
        n = raw if isinstance(raw, int) else round(float(raw))
        packed = struct.pack(">" + t.struct_code, max(lo, min(hi, n)))
    return bytes_to_words(packed, byte_order, word_order)
