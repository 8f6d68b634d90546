"""DL/T 645-2007 values: BCD layouts such as ``XXX.XXX`` and the standard's common identifiers.

A value travels BCD, low byte first, after the DI in a reply's data. For a signed item
the top bit of the last (most significant) byte is the sign: ``34 12 80`` in format
``XXX.XXX`` is -1.234. A value that is not BCD, or longer than its layout, raises
``DecodeError``; a shorter one ``ShortFrame``: never a guessed number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ..errors import DecodeError, ShortFrame
from .codec import di_text, is_bcd, parse_di

_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


@dataclass(frozen=True, slots=True)
class BcdFormat:
    """A BCD layout such as ``XXX.XXX``: digit count, digits after the point, bytes."""

    digits: int
    decimals: int

    @property
    def size(self) -> int:
        return self.digits // 2


@cache
def parse_format(fmt: str) -> BcdFormat:
    """``"XXXXXX.XX"`` → 8 digits, 2 decimals (4 bytes). Raises ValueError if malformed."""
    m = _FORMAT.match(fmt.strip().upper())
    if m is None:
        raise ValueError(f"BCD format {fmt!r} must look like XXX.XXX")
    digits = len(m.group(1)) + len(m.group(2) or "")
    if digits % 2:
        raise ValueError(f"BCD format {fmt!r} has {digits} digits, not a whole number of bytes")
    return BcdFormat(digits, len(m.group(2) or ""))


def decode_value(data: bytes, fmt: str, signed: bool = False) -> int | float:
    """The number in BCD ``data`` (low byte first); sign in the top bit if ``signed``."""
    f = parse_format(fmt)
    if len(data) < f.size:
        raise ShortFrame(f"{len(data)} value bytes, format {fmt} needs {f.size}")
    if len(data) > f.size:
        raise DecodeError(f"{len(data)} value bytes, format {fmt} has {f.size}")
    raw = bytearray(data)
    negative = signed and bool(raw[-1] & 0x80)
    if signed:
        raw[-1] &= 0x7F
    if not is_bcd(raw):
        raise DecodeError(f"value bytes {bytes(data).hex(' ')} are not BCD")
    n = 0
    for b in reversed(raw):
        n = n * 100 + (b >> 4) * 10 + (b & 0x0F)
    if negative:
        n = -n
    if f.decimals == 0:
        return n
    return round(n / 10**f.decimals, f.decimals)


def _max_units(f: BcdFormat, signed: bool) -> int:
    """The largest integer (in units of the last digit) a layout holds; a signed top digit
    only goes to 7, its top bit being the sign."""
    return (8 * 10 ** (f.digits - 1) if signed else 10**f.digits) - 1


def value_limit(fmt: str, signed: bool = False) -> float:
    """The largest magnitude ``fmt`` can carry."""
    f = parse_format(fmt)
    return _max_units(f, signed) / 10**f.decimals


def encode_value(value: float, fmt: str, signed: bool = False) -> bytes:
    """BCD bytes (low byte first) of ``value`` rounded to ``fmt``. ValueError if it won't fit."""
    f = parse_format(fmt)
    n = round(value * 10**f.decimals)
    if n < 0 and not signed:
        raise ValueError(f"{value} is negative and format {fmt} is unsigned")
    if abs(n) > _max_units(f, signed):
        raise ValueError(f"{value} does not fit format {fmt}")
    digits = f"{abs(n):0{f.digits}d}"
    out = bytearray(int(digits[i : i + 2], 16) for i in range(f.digits - 2, -1, -2))
    if n < 0:
        out[-1] |= 0x80
    return bytes(out)


# --- common data identifiers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataItem:
    """One data identifier of the standard's table: BCD format, sign, unit, meaning."""

    di: int
    format: str
    signed: bool
    unit: str
    description: str


def _item(di: str, fmt: str, signed: bool, unit: str, description: str) -> tuple[int, DataItem]:
    d = parse_di(di)
    return d, DataItem(d, fmt, signed, unit, description)


# Combined active energy carries a sign bit (its direction); the others are magnitudes.
KNOWN_ITEMS: dict[int, DataItem] = dict([
    _item("00-00-00-00", "XXXXXX.XX", True, "kWh", "combined active energy, total"),
    _item("00-01-00-00", "XXXXXX.XX", False, "kWh", "forward active energy, total"),
    _item("00-02-00-00", "XXXXXX.XX", False, "kWh", "reverse active energy, total"),
    _item("02-01-01-00", "XXX.X", False, "V", "phase A voltage"),
    _item("02-01-02-00", "XXX.X", False, "V", "phase B voltage"),
    _item("02-01-03-00", "XXX.X", False, "V", "phase C voltage"),
    _item("02-02-01-00", "XXX.XXX", True, "A", "phase A current"),
    _item("02-02-02-00", "XXX.XXX", True, "A", "phase B current"),
    _item("02-02-03-00", "XXX.XXX", True, "A", "phase C current"),
    _item("02-03-00-00", "XX.XXXX", True, "kW", "total active power"),
    _item("02-03-01-00", "XX.XXXX", True, "kW", "phase A active power"),
    _item("02-03-02-00", "XX.XXXX", True, "kW", "phase B active power"),
    _item("02-03-03-00", "XX.XXXX", True, "kW", "phase C active power"),
    _item("02-04-00-00", "XX.XXXX", True, "kvar", "total reactive power"),
    _item("02-06-00-00", "X.XXX", True, "", "total power factor"),
    _item("02-06-01-00", "X.XXX", True, "", "phase A power factor"),
    _item("02-06-02-00", "X.XXX", True, "", "phase B power factor"),
    _item("02-06-03-00", "X.XXX", True, "", "phase C power factor"),
    _item("02-80-00-02", "XX.XX", False, "Hz", "grid frequency"),
])


def item_layout(di: str | int, fmt: str | None = None, signed: bool = False) -> tuple[str, bool]:
    """The (format, signed) to decode ``di`` with: the point's own format when it gives one,
    else the standard's table. ValueError for an unknown DI without a format."""
    if fmt is not None:
        parse_format(fmt)
        return fmt, signed
    item = KNOWN_ITEMS.get(parse_di(di))
    if item is None:
        raise ValueError(f"DI {di_text(parse_di(di))} is not in the table of common "
                         "identifiers: give the point a 'format'")
    return item.format, item.signed
