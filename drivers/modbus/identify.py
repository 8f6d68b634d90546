"""Which catalog profiles fit a device that answers: try each profile's read plan on it.

A profile fits when every request of its plan is answered with data (no exception, no
error) and every point decodes. Fits are ranked by how many registers the plan covers, so a
profile describing much of the device comes before one that happens to cover a corner of it.
Real devices that answer any address with zeros fit everything: the values shown with each
fit are what the technician judges by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DriverError
from ..reading import Value
from .bus import ModbusBus
from .datatypes import decode
from .planner import plan_reads
from .points import ModbusProfile as Profile


@dataclass
class Fit:
    profile: Profile
    requests: int
    registers: int
    values: dict[str, Value] = field(default_factory=dict)


async def try_profile(bus: ModbusBus, unit: int, profile: Profile) -> Fit | None:
    """The profile's plan, executed against ``unit``; None at the first request that fails."""
    plan = plan_reads(profile.points, profile.max_registers_per_read, profile.read_gap)
    values: dict[str, Value] = {}
    for req in plan:
        try:
            words = await bus.read(unit, req)
            for name in req.points:
                p = profile.points[name]
                assert p.address is not None
                start = p.address - req.address
                byte_order, word_order = profile.order_of(p)
                values[name] = decode(words[start : start + p.registers], p.type_name, byte_order=byte_order,
                                      word_order=word_order, scale=p.scale, offset=p.offset, length=p.length,
                                      bit=p.bit)
        except DriverError:
            return None
    return Fit(profile, len(plan), sum(r.count for r in plan), values)


async def fitting_profiles(bus: ModbusBus, unit: int, profiles: list[Profile]) -> list[Fit]:
    """Every Modbus profile whose whole plan ``unit`` answers, best first."""
    fits = []
    for profile in profiles:
        if profile.protocol != "modbus":
            continue
        fit = await try_profile(bus, unit, profile)
        if fit is not None:
            fits.append(fit)
    fits.sort(key=lambda f: (-f.registers, -len(f.profile.points), f.profile.name))
    return fits
