"""A Modbus device on a bus: its read plan, executed and decoded."""

from __future__ import annotations

from ..datatypes import decode
from ..planner import ReadRequest, plan_reads
from ..profile import Profile
from ..reading import Value
from .bus import ModbusBus


class ModbusDevice:
    def __init__(self, bus: ModbusBus, unit: int, profile: Profile) -> None:
        self.bus = bus
        self.unit = unit
        self.profile = profile
        self.plan: list[ReadRequest] = plan_reads(
            profile.points, profile.max_registers_per_read, profile.read_gap
        )

    async def read(self) -> dict[str, Value]:
        """Execute the plan; raise the first DriverError (a reading is all or nothing)."""
        values: dict[str, Value] = {}
        for req in self.plan:
            words = await self.bus.read(self.unit, req)
            for name in req.points:
                p = self.profile.points[name]
                assert p.address is not None
                start = p.address - req.address
                byte_order, word_order = self.profile.order_of(p)
                values[name] = decode(
                    words[start : start + p.registers], p.type_name,
                    byte_order=byte_order, word_order=word_order, scale=p.scale,
                    offset=p.offset, length=p.length, bit=p.bit,
                )
        return values
