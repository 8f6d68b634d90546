"""Device profiles: the catalog's data model, validated with line-located errors.

A profile describes one device model: its protocol, serial defaults and points. The
simulator reads the optional ``sim:`` block of each point to serve plausible values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .modbus.datatypes import BIT_TABLES, TYPES, Order, Table, register_count
from .modbus.writes import check_writable
from .vocabulary import VOCABULARY, unit_of
from .yamlsource import did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimSpec(Strict):
    """How the simulator makes a point's value move.

    - ``daily``: ``base`` plus ``amplitude`` through a 24 h cycle (peak at ``peak_hour``),
      with ``noise``;
    - ``walk``: a bounded random walk between ``min`` and ``max`` by ``step``;
    - ``counter``: grows by ``rate`` per hour, never falls (energy, rain totals);
    - ``storm``: rain cycles of ``period`` seconds; ``role: rainfall`` accumulates rain,
      ``role: level`` rises after rain and drains back to ``base``;
    - ``constant``: always ``value``.
    """

    pattern: Literal["daily", "walk", "counter", "storm", "constant"]
    base: float = 0.0
    amplitude: float = 0.0
    peak_hour: float = 14.0
    noise: float = 0.0
    min: float | None = None
    max: float | None = None
    step: float = 1.0
    rate: float = 1.0
    period: float = 3600.0
    role: Literal["rainfall", "level"] = "level"
    value: float | bool | str = 0
    # a load behind a relay and a dimmer: ~0 while the bool point ``switched_by`` is off,
    # scaled by the 0-100 % point ``dimmed_by`` otherwise (the simulator follows writes to them)
    switched_by: str | None = None
    dimmed_by: str | None = None


class Point(Strict):
    """One value a device offers."""

    table: Table | None = None
    address: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    type: str | None = None
    length: Annotated[int, Field(ge=1, le=125)] | None = None
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    byte_order: Order | None = None
    word_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    description: str | None = None
    # DL/T 645: data identifier (DI3-DI2-DI1-DI0 as hex) and BCD layout, e.g. "XXXXXX.XX"
    di: str | None = None
    format: str | None = None
    signed: bool = False
    sim: SimSpec | None = None
    # quality: raw values meaning "no valid value", physically possible values, published precision
    invalid: list[Annotated[int, Field(ge=0)]] | None = None
    range: tuple[float, float] | None = None
    decimals: Annotated[int, Field(ge=0, le=9)] | None = None
    # writes (drivers/modbus/writes.py): what a config's control.allow may name
    writable: bool = False
    min: float | None = None
    max: float | None = None
    values: list[int | float | bool | str] | None = None
    write_function: Literal[5, 6, 15, 16] | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str | None) -> str | None:
        if v is not None and v not in TYPES:
            raise ValueError(f"unknown type '{v}'{did_you_mean(v, TYPES)} (types: {', '.join(TYPES)})")
        return v

    @property
    def type_name(self) -> str:
        if self.type:
            return self.type
        return "bool" if self.table in BIT_TABLES else "uint16"

    @property
    def registers(self) -> int:
        return register_count(self.type_name, self.length)

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        if self.di is not None:
            if self.writable or self.write_function is not None:
                raise ValueError("DL/T 645 points cannot be writable: the agent does not write to meters")
            return self
        if self.address is None:
            raise ValueError("a Modbus point needs 'address' (a DL/T 645 point needs 'di')")
        t = TYPES[self.type_name]
        table = self.table or "holding"
        if table not in t.tables:
            raise ValueError(f"type {t.name} cannot be read from table {table} "
                             f"(allowed: {', '.join(sorted(t.tables))})")
        if t.needs_length and self.length is None:
            raise ValueError(f"type {t.name} needs 'length' in registers")
        if t.needs_bit and self.bit is None:
            raise ValueError(f"type {t.name} needs 'bit' (0-15)")
        if not t.numeric and (self.scale != 1 or self.offset != 0):
            raise ValueError(f"type {t.name} takes no scale or offset")
        if self.address + self.registers - 1 > 0xFFFF:
            raise ValueError("point runs past register 65535")
        check_writable(self, table)
        return self


class SerialDefaults(Strict):
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class Profile(Strict):
    """One device model of the catalog (or a technician's own file)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    vendor: str
    model: str
    description: str | None = None
    category: Literal["dust", "weather", "water", "energy", "lighting", "other"] = "other"
    protocol: Literal["modbus", "dlt645"] = "modbus"
    serial: SerialDefaults | None = None
    byte_order: Order = "big"
    word_order: Order = "big"
    max_registers_per_read: Annotated[int, Field(ge=1, le=125)] = 125
    read_gap: Annotated[int, Field(ge=0, le=125)] = 8
    points: dict[str, Point]

    @model_validator(mode="after")
    def _points(self) -> Profile:
        if not self.points:
            raise ValueError("a profile needs at least one point")
        for name, p in self.points.items():
            if unit_of(name) is None and p.unit is None:
                raise ValueError(
                    f"point '{name}' is not in the measurement vocabulary{did_you_mean(name, VOCABULARY)}"
                    " and declares no 'unit'"
                )
            if self.protocol == "modbus" and p.di is not None:
                raise ValueError(f"point '{name}': 'di' belongs to DL/T 645 profiles")
            if self.protocol == "dlt645" and p.di is None:
                raise ValueError(f"point '{name}': a DL/T 645 point needs 'di'")
            if p.registers > self.max_registers_per_read and p.di is None:
                raise ValueError(f"point '{name}' spans more than max_registers_per_read")
            for other in (p.sim.switched_by, p.sim.dimmed_by) if p.sim else ():
                if other is not None and other not in self.points:
                    raise ValueError(f"point '{name}': sim names point '{other}', which the profile lacks")
        return self

    def unit_of(self, point: str) -> str:
        p = self.points[point]
        return p.unit if p.unit is not None else (unit_of(point) or "")

    def units(self) -> dict[str, str]:
        return {name: self.unit_of(name) for name in self.points}

    def order_of(self, point: Point) -> tuple[Order, Order]:
        return (point.byte_order or self.byte_order, point.word_order or self.word_order)


def points_overlap(a: Point, b: Point) -> bool:
    """Do two Modbus points decode a register in common? Bits of one status register may
    each be a point of their own (different ``bit:``); anything else sharing a register
    would publish nonsense (-1654 °C from half a float)."""
    if a.address is None or b.address is None or (a.table or "holding") != (b.table or "holding"):
        return False
    if a.address + a.registers <= b.address or b.address + b.registers <= a.address:
        return False
    return not (a.type_name == b.type_name == "bit" and a.address == b.address and a.bit != b.bit)


def overlapping_points(profile: Profile) -> list[tuple[str, str]]:
    """(point, why) for each Modbus point that shares a register with an earlier one."""
    out: list[tuple[str, str]] = []
    seen: list[tuple[str, Point]] = []
    for name, p in profile.points.items():
        for other, q in seen:
            if points_overlap(p, q):
                assert p.address is not None
                out.append((name, f"overlaps point '{other}' in the {p.table or 'holding'} table"
                                  f" (from register {p.address:#06x}): two values decoded from one register"))
                break
        seen.append((name, p))
    return out
