"""Modbus profiles: points that live in a table at a register address, decoded by type."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..profile import PointBase, ProfileBase
from ..yamlsource import did_you_mean
from .datatypes import BIT_TABLES, TYPES, Order, Table, register_count
from .writes import check_writable

DLT645_ONLY = "belongs to DL/T 645 points (protocol: dlt645), not to a Modbus point"


class ModbusPoint(PointBase):
    """One value a Modbus device offers: table, address, data type and write options."""

    foreign_keys: ClassVar[dict[str, str]] = {"di": DLT645_ONLY, "format": DLT645_ONLY, "signed": DLT645_ONLY}

    table: Table | None = None
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    type: str | None = None
    length: Annotated[int, Field(ge=1, le=125)] | None = None
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    byte_order: Order | None = None
    word_order: Order | None = None
    # raw register values meaning "no valid value"
    invalid: list[Annotated[int, Field(ge=0)]] | None = None
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
    def _consistent(self) -> ModbusPoint:
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


class ModbusProfile(ProfileBase):
    """A Modbus device model: byte and word order, read limits, and Modbus points."""

    protocol: Literal["modbus"] = "modbus"
    byte_order: Order = "big"
    word_order: Order = "big"
    max_registers_per_read: Annotated[int, Field(ge=1, le=125)] = 125
    read_gap: Annotated[int, Field(ge=0, le=125)] = 8
    points: dict[str, ModbusPoint]

    @model_validator(mode="after")
    def _fits_a_read(self) -> ModbusProfile:
        for name, p in self.points.items():
            if p.registers > self.max_registers_per_read:
                raise ValueError(f"point '{name}' spans more than max_registers_per_read")
        return self

    def order_of(self, point: ModbusPoint) -> tuple[Order, Order]:
        return (point.byte_order or self.byte_order, point.word_order or self.word_order)


def points_overlap(a: ModbusPoint, b: ModbusPoint) -> bool:
    """Do two Modbus points decode a register in common? Bits of one status register may
    each be a point of their own (different ``bit:``); anything else sharing a register
    would publish nonsense (-1654 °C from half a float)."""
    if (a.table or "holding") != (b.table or "holding"):
        return False
    if a.address + a.registers <= b.address or b.address + b.registers <= a.address:
        return False
    return not (a.type_name == b.type_name == "bit" and a.address == b.address and a.bit != b.bit)


def overlapping_points(profile: ModbusProfile) -> list[tuple[str, str]]:
    """(point, why) for each point that shares a register with an earlier one."""
    out: list[tuple[str, str]] = []
    seen: list[tuple[str, ModbusPoint]] = []
    for name, p in profile.points.items():
        for other, q in seen:
            if points_overlap(p, q):
                out.append((name, f"overlaps point '{other}' in the {p.table or 'holding'} table"
                                  f" (from register {p.address:#06x}): two values decoded from one register"))
                break
        seen.append((name, p))
    return out


def as_modbus(profile: ProfileBase) -> ModbusProfile:
    """The profile as a Modbus profile; ValueError naming its protocol when it is another."""
    if not isinstance(profile, ModbusProfile):
        raise ValueError(f"{profile.name} is a {profile.protocol} profile, not a Modbus one")
    return profile
