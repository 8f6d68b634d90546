"""DL/T 645-2007 meters behind the protocol interface (``drivers/protocols.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocols import ProtocolSpec, Section
from .bus import DLT645Bus, DLT645Device
from .codec import address_bytes
from .points import DLT645Profile


def check_address(address: Any) -> str | None:
    try:
        address_bytes(str(address))
    except ValueError as exc:
        return str(exc)
    return None


def open_bus(name: str, s: Mapping[str, Any]) -> DLT645Bus:
    return DLT645Bus(name, s["port"], baudrate=s["baudrate"], parity=s["parity"], stopbits=s["stopbits"],
                     bytesize=s["bytesize"], timeout=s["timeout"], retries=s["retries"],
                     inter_frame_delay=s.get("inter_frame_delay"))


def build_device(bus: DLT645Bus, address: str, profile: DLT645Profile) -> DLT645Device:
    return DLT645Device(bus, str(address), profile)


def summary(profile: DLT645Profile) -> str:
    return "DL/T 645-2007"


def describe(p: DLT645Profile) -> list[Section]:
    rows = [[name, pt.di, pt.format or "", p.unit_of(name), pt.description or ""] for name, pt in p.points.items()]
    return [(["POINT", "DATA ID", "FORMAT", "UNIT", "DESCRIPTION"], rows),
            f"read plan: one request per data identifier, {len(p.points)} per poll"]


DLT645 = ProtocolSpec(
    name="dlt645", title="DL/T 645", profile_model=DLT645Profile, address_key="address",
    bus_types=frozenset({"serial"}), check_address=check_address, open_bus=open_bus,
    build_device=build_device, describe=describe, summary=summary,
    simulation="drivers.dlt645.simulation:SIMULATION", tools="drivers.dlt645.probe:TOOLS",
)
