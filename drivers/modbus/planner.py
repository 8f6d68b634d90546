"""The read planner: a device's points coalesced into the fewest Modbus requests.

Points of one table are sorted by address and packed greedily: a request grows while the
next point starts at most ``gap`` registers after the request's end and the request stays
within ``max_registers``. Greedy is minimal here: every request must start at the first
point not yet covered, and extending it as far as allowed never hurts what follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .datatypes import BIT_TABLES
from .points import ModbusPoint as Point

MAX_BITS_PER_READ = 2000  # Modbus limit for function codes 1 and 2
FUNCTION_CODE = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


@dataclass(frozen=True, slots=True)
class ReadRequest:
    table: str
    address: int
    count: int
    points: tuple[str, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.table]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_reads(points: Mapping[str, Point], max_registers: int = 125, gap: int = 8) -> list[ReadRequest]:
    """Coalesce ``points`` (Modbus points only) into read requests, ordered by table and address."""
    by_table: dict[str, list[tuple[int, int, str]]] = {}
    for name, p in points.items():
        if p.address is None:
            continue
        table = p.table or "holding"
        by_table.setdefault(table, []).append((p.address, p.address + p.registers, name))
    plan: list[ReadRequest] = []
    for table in ("coil", "discrete", "holding", "input"):
        spans = sorted(by_table.get(table, []))
        if not spans:
            continue
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else max_registers
        max_gap = gap * 16 if table in BIT_TABLES else gap
        start, end, names = spans[0][0], spans[0][1], [spans[0][2]]
        for a, e, name in spans[1:]:
            if a - end <= max_gap and max(end, e) - start <= limit:
                end = max(end, e)
                names.append(name)
            else:
                plan.append(ReadRequest(table, start, end - start, tuple(names)))
                start, end, names = a, e, [name]
        plan.append(ReadRequest(table, start, end - start, tuple(names)))
    return plan
