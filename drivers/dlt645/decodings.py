"""Every plausible reading of a DL/T 645 value, for a technician facing an unknown identifier.

A value is BCD, low byte first. Without the standard's table (or the meter's manual) the
position of the decimal point and whether the top bit is a sign are unknown, so each is
tried: the digits with 0 to 4 decimals, unsigned when every nibble is a digit, and signed
when the top bit of the last byte is set and the rest is BCD. Each candidate's ``format``
is what a profile's point would declare (``format: XXX.XXX``, ``signed: true``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DriverError
from . import bcd
from .codec import is_bcd, parse_di

MAX_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class Candidate:
    """One reading of the value: its BCD layout, sign, and the number as text and value."""

    format: str
    signed: bool
    text: str  # exact, as the meter means it: "-0012.34" reads "-12.34"

    @property
    def value(self) -> int | float:
        return float(self.text) if "." in self.text else int(self.text)


@dataclass(frozen=True, slots=True)
class Known:
    """A value decoded by the standard's table of common identifiers."""

    item: bcd.DataItem
    value: int | float

    @property
    def text(self) -> str:
        decimals = bcd.parse_format(self.item.format).decimals
        return f"{self.value:.{decimals}f}"


def raw_hex(data: bytes) -> str:
    """The value bytes as they came (0x33 removed), low byte first: ``15 23``."""
    return data.hex(" ").upper()


def digits(data: bytes) -> str:
    """The BCD digits, most significant first (nibbles above 9 show as hex letters)."""
    return bytes(reversed(data)).hex().upper()


def _number(digit_text: str, decimals: int, negative: bool) -> str:
    whole = digit_text[: len(digit_text) - decimals].lstrip("0") or "0"
    frac = digit_text[len(digit_text) - decimals :] if decimals else ""
    text = f"{whole}.{frac}" if frac else whole
    if negative and text.strip("0.") != "":
        text = "-" + text
    return text


def layout(ndigits: int, decimals: int) -> str:
    """``XXXX.XX`` for 6 digits with 2 decimals."""
    whole = "X" * (ndigits - decimals)
    return f"{whole}.{'X' * decimals}" if decimals else whole


def candidates(data: bytes, max_decimals: int = MAX_DECIMALS) -> list[Candidate]:
    """Every plausible BCD reading of ``data``: unsigned ones first, then signed ones.

    Empty when no reading is BCD (e.g. a value in binary or ASCII).
    """
    if not data:
        return []
    ndigits = 2 * len(data)
    spans = range(min(max_decimals, ndigits - 1) + 1)
    out: list[Candidate] = []
    if is_bcd(data):
        text = digits(data)
        out += [Candidate(layout(ndigits, d), False, _number(text, d, False)) for d in spans]
    magnitude = bytes(data[:-1]) + bytes([data[-1] & 0x7F])
    if data[-1] & 0x80 and is_bcd(magnitude):
        text = digits(magnitude)
        out += [Candidate(layout(ndigits, d), True, _number(text, d, True)) for d in spans]
    return out


def known(di: str | int, data: bytes) -> Known | None:
    """The value decoded by the table of common identifiers; None for a DI not in it.

    Raises DecodeError or ShortFrame when the bytes do not fit the table's layout.
    """
    item = known_item(di)
    if item is None:
        return None
    return Known(item, bcd.decode_value(data, item.format, item.signed))


def try_known(di: str | int, data: bytes) -> tuple[Known | None, DriverError | None]:
    """:func:`known`, with a decoding failure returned instead of raised."""
    try:
        return known(di, data), None
    except DriverError as exc:
        return None, exc


def known_item(di: str | int) -> bcd.DataItem | None:
    """The entry of the table of common identifiers for ``di``, if it has one."""
    return bcd.KNOWN_ITEMS.get(parse_di(di))
