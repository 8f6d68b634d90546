"""Every plausible reading of raw registers, for a technician facing an unknown register map.

Per register: the word in hex, uint16, int16 and its two bytes as text. Per pair of
registers starting at each address: uint32, int32 and float32, with the high word first
(big word order, "ABCD") and with the low word first (little word order, "CDAB"). And all
registers as one string.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Register:
    address: int
    word: int

    @property
    def hex(self) -> str:
        return f"0x{self.word:04X}"

    @property
    def uint16(self) -> int:
        return self.word

    @property
    def int16(self) -> int:
        return self.word - 0x10000 if self.word & 0x8000 else self.word

    @property
    def text(self) -> str:
        return printable(self.word.to_bytes(2, "big"))


@dataclass(frozen=True, slots=True)
class Pair:
    """Two registers read as one 32-bit value, in one word order."""

    address: int
    raw: bytes  # the four bytes, high byte of the value first

    @property
    def uint32(self) -> int:
        return int(struct.unpack(">I", self.raw)[0])

    @property
    def int32(self) -> int:
        return int(struct.unpack(">i", self.raw)[0])

    @property
    def float32(self) -> float:
        return float(struct.unpack(">f", self.raw)[0])


def printable(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


def registers(address: int, words: list[int]) -> list[Register]:
    return [Register(address + i, w & 0xFFFF) for i, w in enumerate(words)]


def pairs(address: int, words: list[int]) -> list[tuple[Pair, Pair]]:
    """(big word order, little word order) for each pair of consecutive registers."""
    out = []
    for i in range(len(words) - 1):
        hi, lo = words[i] & 0xFFFF, words[i + 1] & 0xFFFF
        out.append((Pair(address + i, hi.to_bytes(2, "big") + lo.to_bytes(2, "big")),
                    Pair(address + i, lo.to_bytes(2, "big") + hi.to_bytes(2, "big"))))
    return out


def as_string(words: list[int]) -> str:
    """All registers as ASCII, high byte first; bytes that are not printable become dots."""
    return printable(b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words))


def fmt_float(x: float) -> str:
    """A float32 as a person would write it: 7 significant digits, no noise."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and (abs(x) >= 1e9 or abs(x) < 1e-6):
        return f"{x:.6e}"
    return f"{x:.7g}"
