"""A Modbus device on a bus: its read plan, executed and decoded point by point.

Quality is per point: a point whose registers hold NaN, a listed ``invalid`` value, or
that the device refuses to serve gets an error naming why; the other points of the poll
keep their values. When a merged request is refused with exception 02 (illegal data
address: the device has a hole in its register map, or cannot serve that block at once),
the request is halved until the readable parts are found; the split plan is kept for the
device, so later polls send only requests that work (one extra request per unreadable
point, never a retry storm).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import BusUnavailable, DriverError, ExceptionResponse, NoResponse
from ..reading import Polled, Value
from .bus import ModbusBus
from .datatypes import PointDecoder
from .planner import ReadRequest, plan_reads
from .points import ModbusProfile as Profile
from .writes import plan_write

log = logging.getLogger(__name__)

ILLEGAL_ADDRESS = 0x02
# failures that say nothing more will come back on this poll: stop asking
_SILENT = (NoResponse, BusUnavailable)


@dataclass(frozen=True, slots=True)
class PointLayout:
    name: str
    start: int  # its first register within the request's answer
    decode: PointDecoder
    valid: tuple[float, float] | None


class ModbusDevice:
    def __init__(self, bus: ModbusBus, unit: int, profile: Profile) -> None:
        self.bus = bus
        self.unit = unit
        self.profile = profile
        self.plan: list[ReadRequest] = plan_reads(
            profile.points, profile.max_registers_per_read, profile.read_gap
        )
        # per request, its points' layout, worked out once (and again only when a request is split)
        self._layout: list[tuple[ReadRequest, list[PointLayout]]] = [(r, self._points_of(r)) for r in self.plan]

    def _points_of(self, req: ReadRequest) -> list[PointLayout]:
        out = []
        for name in req.points:
            p = self.profile.points[name]
            assert p.address is not None
            byte_order, word_order = self.profile.order_of(p)
            decoder = PointDecoder(p.type_name, byte_order=byte_order, word_order=word_order, scale=p.scale,
                                   offset=p.offset, length=p.length, bit=p.bit,
                                   invalid=frozenset(p.invalid or ()), decimals=p.decimals)
            out.append(PointLayout(name, p.address - req.address, decoder, p.range))
        return out

    async def read(self) -> Polled:
        """Execute the plan. Raise the first DriverError when no point could be read."""
        polled = Polled()
        first_error: DriverError | None = None
        layout = list(self._layout)
        i = 0
        while i < len(layout):
            req, points = layout[i]
            try:
                words = await self.bus.read(self.unit, req)
            except ExceptionResponse as exc:
                first_error = first_error or exc
                if exc.code == ILLEGAL_ADDRESS and len(req.points) > 1:
                    layout[i : i + 1] = self._split(req)
                    continue
                for p in points:
                    polled.errors[p.name] = exc.status
            except _SILENT as exc:
                if not polled.values:
                    raise
                for _, rest in layout[i:]:  # the device stopped answering: the rest are lost too
                    for p in rest:
                        polled.errors[p.name] = exc.status
                break
            except DriverError as exc:
                first_error = first_error or exc
                for p in points:
                    polled.errors[p.name] = exc.status
            else:
                for p in points:
                    try:
                        polled.keep(p.name, p.decode(words[p.start : p.start + p.decode.count]), p.valid)
                    except DriverError as exc:
                        polled.errors[p.name] = exc.status
            i += 1
        if not polled.values and first_error is not None:
            raise first_error
        return polled

    def _split(self, req: ReadRequest) -> list[tuple[ReadRequest, list[PointLayout]]]:
        """Halve a refused request (by points) and remember the halves for every later poll."""
        half = len(req.points) // 2
        parts = []
        for names in (req.points[:half], req.points[half:]):
            sub = {n: self.profile.points[n] for n in names}
            parts += [(r, self._points_of(r)) for r in plan_reads(sub, req.count, 0)]
        at = next(i for i, (r, _) in enumerate(self._layout) if r == req)
        self._layout[at : at + 1] = parts
        self.plan = [r for r, _ in self._layout]
        log.info("unit %d (%s): %s registers %d..%d refused (exception 02); reading them in %d parts from now on",
                 self.unit, self.profile.name, req.table, req.address, req.end - 1, len(parts))
        return parts

    async def write(self, values: Mapping[str, Value]) -> dict[str, Value]:
        """Write ``values`` (point → value) and return the values read back from the device.

        Raises :class:`~drivers.errors.WriteRefused` before touching the bus when a point is
        not writable or a value does not fit it, and a DriverError when the bus fails."""
        writes = [plan_write(self.profile, name, value) for name, value in values.items()]
        for w in writes:
            await self.bus.write(self.unit, w)
        return await self.read_points([w.point for w in writes])

    async def read_points(self, names: list[str]) -> dict[str, Value]:
        """Read just these points now (the read-back after a write). Raises a DriverError."""
        points = {n: self.profile.points[n] for n in names}
        out: dict[str, Value] = {}
        for req in plan_reads(points, self.profile.max_registers_per_read, 0):
            words = await self.bus.read(self.unit, req)
            for p in self._points_of(req):
                out[p.name] = p.decode(words[p.start : p.start + p.decode.count])
        return {n: out[n] for n in names}  # in the order asked
