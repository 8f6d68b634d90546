"""Writes to a device: which points a profile lets be written, and the register write a value
implies.

A write is planned, not executed, here: :func:`plan_write` checks the value against the
point (``min``/``max`` or ``values:``), encodes it through the same data-type table as
decoding (``drivers.modbus.datatypes``: scale and offset inverted, byte and word order respected),
refuses a value the type cannot hold or that does not encode exactly, and returns a
:class:`RegisterWrite` a bus can execute and ``--dry-run`` can print.

Function codes: a coil is written with FC05 (``write_function: 15`` for FC15); a holding
register with FC06 when the point spans one register, FC16 when it spans more (or
``write_function: 16`` for a device that only takes FC16). DL/T 645 points are never
writable.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import WriteRefused
from .datatypes import TYPES, PointDecoder, encode, register_count

if TYPE_CHECKING:
    from .points import ModbusPoint as Point
    from .points import ModbusProfile as Profile

Value = int | float | bool | str
__all__ = ["RegisterWrite", "WriteRefused", "check_value", "check_writable", "plan_write"]
WRITABLE_TABLES = ("coil", "holding")
FUNCTION_NAMES = {5: "write single coil", 6: "write single register", 15: "write multiple coils",
                  16: "write multiple registers"}


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    """One Modbus write request: FC05/15 carry ``coil``, FC06/16 carry ``registers``."""

    point: str
    value: Value
    function: int
    address: int
    registers: tuple[int, ...] = ()
    coil: bool | None = None

    def describe(self, unit: int | None = None) -> str:
        """What ``--dry-run`` prints, e.g. ``FC06 write single register unit 5 address 0x0000: [60]``."""
        who = f" unit {unit}" if unit is not None else ""
        head = f"FC{self.function:02d} {FUNCTION_NAMES[self.function]}{who} address 0x{self.address:04X}"
        if self.coil is not None:
            return f"{head}: {'ON (0xFF00)' if self.coil else 'OFF (0x0000)'}"
        return f"{head}: [{', '.join(f'0x{r:04X}' for r in self.registers)}]"


def check_writable(point: Point, table: str) -> None:
    """Profile validation of a Modbus point's write options (raises ValueError)."""
    has_limits = point.min is not None or point.max is not None or point.values is not None
    if not point.writable:
        if has_limits or point.write_function is not None:
            raise ValueError("'min', 'max', 'values' and 'write_function' need 'writable: true'")
        return
    if table not in WRITABLE_TABLES:
        raise ValueError(f"table {table} is read-only: only coil and holding points can be writable")
    kind = point.type_name
    if kind in ("bit", "string"):
        raise ValueError(f"type {kind} cannot be writable (a bit shares its register; strings are not written)")
    if kind != "bool" and point.values is None and (point.min is None or point.max is None):
        raise ValueError("a writable number needs 'min' and 'max', or a 'values' list")
    if point.min is not None and point.max is not None and point.min > point.max:
        raise ValueError("'min' must not be above 'max'")
    fc = point.write_function
    if fc is not None:
        allowed = (5, 15) if table == "coil" else (6, 16)
        if fc not in allowed:
            raise ValueError(f"write_function {fc} does not write a {table} (use {' or '.join(map(str, allowed))})")
        if fc == 6 and register_count(kind, point.length) > 1:
            raise ValueError(f"write_function 6 writes one register; type {kind} spans more (use 16)")


def function_of(point: Point) -> int:
    if point.write_function is not None:
        return point.write_function
    if point.table == "coil":
        return 5
    return 6 if point.registers == 1 else 16


def check_value(name: str, point: Point, value: object) -> Value:
    """The value as the point takes it, or :class:`WriteRefused` saying why not."""
    if not point.writable:
        raise WriteRefused(f"point '{name}' is not writable")
    if point.type_name == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise WriteRefused(f"{name} takes true or false, not {value!r}")
        value = bool(value)
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WriteRefused(f"{name} takes a number, not {value!r}")
    if point.values is not None and value not in point.values:
        raise WriteRefused(f"{name}={value!r} is not one of the allowed values {point.values}")
    if point.min is not None and value < point.min:
        raise WriteRefused(f"{name}={value!r} is below the minimum {_num(point.min)}")
    if point.max is not None and value > point.max:
        raise WriteRefused(f"{name}={value!r} is above the maximum {_num(point.max)}")
    return value


def plan_write(profile: Profile, name: str, value: object) -> RegisterWrite:
    """The register write that sets point ``name`` of ``profile`` to ``value``."""
    if profile.protocol != "modbus":
        raise WriteRefused(f"{profile.name} is a {profile.protocol} device: writes are Modbus only")
    point = profile.points.get(name)
    if point is None:
        raise WriteRefused(f"{profile.name} has no point '{name}'")
    checked = check_value(name, point, value)
    assert point.address is not None
    fc = function_of(point)
    if point.type_name == "bool":
        return RegisterWrite(name, checked, fc, point.address, coil=bool(checked))
    byte_order, word_order = profile.order_of(point)
    registers = encode_exact(name, point, checked, byte_order, word_order)
    return RegisterWrite(name, checked, fc, point.address, registers=tuple(registers))


def encode_exact(name: str, point: Point, value: Value, byte_order: str, word_order: str) -> list[int]:
    """Encode ``value``, refusing what the type cannot hold or what would not read back the same."""
    t = TYPES[point.type_name]
    assert t.struct_code is not None
    scaled = point.scale != 1 or point.offset != 0
    number = value if isinstance(value, int | float) else float(value)
    raw = (float(number) - point.offset) / point.scale if scaled else number
    if t.struct_code not in "fd":
        bits = 8 * struct.calcsize(t.struct_code)
        lo, hi = (0, 2**bits - 1) if t.struct_code.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not lo <= round(raw) <= hi:
            raise WriteRefused(f"{name}={value!r} does not fit a {t.name} register (raw {_num(raw)},"
                               f" range {lo}..{hi})")
    elif t.struct_code == "f" and abs(float(raw)) > 3.4028234663852886e38:
        raise WriteRefused(f"{name}={value!r} does not fit a float32")
    orders = {"byte_order": byte_order, "word_order": word_order}
    words = encode(value, t.name, scale=point.scale, offset=point.offset, **orders)  # type: ignore[arg-type]
    back = PointDecoder(t.name, scale=point.scale, offset=point.offset, **orders)(words)  # type: ignore[arg-type]
    assert isinstance(back, int | float)
    rel = 1e-6 if t.struct_code == "f" else 1e-12 if t.struct_code == "d" else 0.0
    if not math.isclose(float(back), float(value), rel_tol=rel, abs_tol=1e-9):
        step = f" (steps of {_num(point.scale)})" if scaled else ""
        raise WriteRefused(f"{name}={value!r} cannot be encoded exactly as {t.name}{step}: it would read back"
                           f" as {_num(back)}")
    return words


def _num(x: float | int) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
