"""A Modbus device on a bus: its read plan, executed and decoded."""

from __future__ import annotations

from ..datatypes import PointDecoder
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
        # per request: (point, its first register within the answer, its decoder), worked out once
        self._layout: list[tuple[ReadRequest, list[tuple[str, int, PointDecoder]]]] = []
        for req in self.plan:
            points = []
            for name in req.points:
                p = profile.points[name]
                assert p.address is not None
                byte_order, word_order = profile.order_of(p)
                points.append((name, p.address - req.address, PointDecoder(
                    p.type_name, byte_order=byte_order, word_order=word_order, scale=p.scale,
                    offset=p.offset, length=p.length, bit=p.bit)))
            self._layout.append((req, points))

    async def read(self) -> dict[str, Value]:
        """Execute the plan; raise the first DriverError (a reading is all or nothing)."""
        values: dict[str, Value] = {}
        for req, points in self._layout:
            words = await self.bus.read(self.unit, req)
            for name, start, decoder in points:
                values[name] = decoder(words[start : start + decoder.count])
        return values
