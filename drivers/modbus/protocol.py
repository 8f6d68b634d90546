"""Modbus RTU / TCP / RTU over TCP behind the protocol interface (``drivers/protocols.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocols import ProtocolSpec, Section
from .bus import ModbusBus
from .datatypes import BIT_TABLES
from .device import ModbusDevice
from .planner import plan_reads
from .points import ModbusProfile, overlapping_points
from .wire import bits_per_char, plan_wire_seconds, response_bytes, rtu_wire_seconds
from .writes import plan_write

TABLE_ORDER = ("coil", "discrete", "holding", "input")


def check_unit(unit: Any) -> str | None:
    if not isinstance(unit, int) or not 0 <= unit <= 247:
        return f"a Modbus unit id is 0 to 247, not {unit!r}"
    return None


def open_bus(name: str, s: Mapping[str, Any]) -> ModbusBus:
    common = {"timeout": s["timeout"], "retries": s["retries"], "inter_frame_delay": s.get("inter_frame_delay")}
    if s["type"] == "serial":
        return ModbusBus(name, "serial", port=s["port"], baudrate=s["baudrate"], parity=s["parity"],
                         stopbits=s["stopbits"], bytesize=s["bytesize"], **common)
    return ModbusBus(name, s["type"], host=s["host"], tcp_port=s["port"], **common)


def build_device(bus: ModbusBus, unit: int, profile: ModbusProfile) -> ModbusDevice:
    return ModbusDevice(bus, int(unit), profile)


def profile_problems(profile: ModbusProfile) -> list[tuple[str, str, str]]:
    return [(name, "address", why) for name, why in overlapping_points(profile)]


def summary(profile: ModbusProfile) -> str:
    used = {p.table or "holding" for p in profile.points.values()}
    return f"Modbus ({', '.join(t for t in TABLE_ORDER if t in used)})"


def describe(p: ModbusProfile) -> list[Section]:
    """The point table and the read plan with its wire time, for ``profiles show``."""
    out: list[Section] = [f"byte order {p.byte_order}, word order {p.word_order}, "
                          f"at most {p.max_registers_per_read} registers per read"]
    rows = []
    for name, pt in sorted(p.points.items(), key=lambda kv: ((kv[1].table or "holding"), kv[1].address)):
        scale = "" if pt.scale == 1 and pt.offset == 0 else f"x{pt.scale:g}" + (f" {pt.offset:+g}" if pt.offset else "")
        kind = pt.type_name + (f"[{pt.length}]" if pt.length else "") + (f" bit {pt.bit}" if pt.bit is not None else "")
        order = p.order_of(pt)
        if pt.registers > 1 and order != (p.byte_order, p.word_order):
            kind += f" ({order[0]}/{order[1]})"
        rows.append([name, pt.table or "holding", f"{pt.address} (0x{pt.address:04X})", kind, scale,
                     p.unit_of(name), pt.description or ""])
    out.append((["POINT", "TABLE", "ADDRESS", "TYPE", "SCALE", "UNIT", "DESCRIPTION"], rows))
    plan = plan_reads(p.points, p.max_registers_per_read, p.read_gap)
    baud = p.serial.baudrate if p.serial else 9600
    bits = bits_per_char(p.serial.parity, p.serial.stopbits, p.serial.bytesize) if p.serial else 10
    out.append(f"read plan: {len(plan)} request{'s' if len(plan) > 1 else ''} per poll"
               f" ({plan_wire_seconds(plan, baud, bits) * 1000:.0f} ms on the wire at {baud} baud)")
    rows = []
    for r in plan:
        what = ("bit" if r.table in BIT_TABLES else "register") + ("s" if r.count > 1 else "")
        rows.append([f"fc{r.function_code}", r.table, f"{r.address}..{r.end - 1}", f"{r.count} {what}",
                     f"{rtu_wire_seconds(8, response_bytes(r), baud, bits) * 1000:.1f} ms", ", ".join(r.points)])
    out.append((["FC", "TABLE", "ADDRESSES", "COUNT", "WIRE", "POINTS"], rows))
    return out


MODBUS = ProtocolSpec(
    name="modbus", title="Modbus", profile_model=ModbusProfile, address_key="unit",
    bus_types=frozenset({"serial", "tcp", "rtu-over-tcp"}), check_address=check_unit, open_bus=open_bus,
    build_device=build_device, describe=describe, summary=summary,
    simulation="drivers.modbus.simulation:SIMULATION", profile_problems=profile_problems,
    plan_write=plan_write, tools="drivers.modbus.tools:TOOLS",
)
