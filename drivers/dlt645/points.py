"""DL/T 645 profiles: each point is one data identifier read with control code 0x11."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from ..profile import PointBase, ProfileBase
from .codec import parse_di

MODBUS_ONLY = "belongs to Modbus points (protocol: modbus), not to a DL/T 645 point"
NO_WRITES = "DL/T 645 points cannot be writable: the agent does not write to meters"


class DLT645Point(PointBase):
    """One data identifier (DI3-DI2-DI1-DI0 as hex) and its BCD layout, e.g. ``XXXXXX.XX``."""

    foreign_keys: ClassVar[dict[str, str]] = {
        **{k: MODBUS_ONLY for k in ("table", "address", "type", "length", "bit", "byte_order", "word_order",
                                    "invalid", "write_function")},
        **{k: NO_WRITES for k in ("writable", "min", "max", "values")},
    }

    di: Annotated[str, Field(description="data identifier DI3-DI2-DI1-DI0, e.g. 00-01-00-00")]
    format: str | None = None
    signed: bool = False

    @field_validator("di")
    @classmethod
    def _di_shape(cls, v: str) -> str:
        parse_di(v)  # ValueError: "data identifier ... must be four hex bytes, e.g. 02-01-01-00"
        return v


class DLT645Profile(ProfileBase):
    """A DL/T 645-2007 meter model."""

    protocol: Literal["dlt645"] = "dlt645"
    points: dict[str, DLT645Point]
