"""The read planner: fewest requests, gaps and size limits respected, one table per request.

Minimality is checked against a brute-force search over every possible request for small
random maps, so the planner's greedy claim is tested rather than trusted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from pydantic import ValidationError

from drivers.modbus.datatypes import BIT_TABLES
from drivers.modbus.planner import FUNCTION_CODE, MAX_BITS_PER_READ, ReadRequest, plan_reads
from drivers.modbus.points import ModbusPoint as Point

TABLES = ("coil", "discrete", "holding", "input")
SIZES = {"uint16": 1, "float32": 2, "uint64": 4}


def pt(address: int, type_name: str | None = None, table: str = "holding", **kw: object) -> Point:
    return Point(table=table, address=address, type=type_name, **kw)  # type: ignore[arg-type]


def spans(points: Mapping[str, Point], table: str) -> dict[str, tuple[int, int]]:
    out = {}
    for name, p in points.items():
        if p.address is not None and (p.table or "holding") == table:
            out[name] = (p.address, p.address + p.registers)
    return out


def unused_runs_ok(covered: list[tuple[int, int]], start: int, end: int, gap: int) -> bool:
    """No run of registers in [start, end) that no covered point uses is longer than ``gap``."""
    used = [False] * (end - start)
    for a, e in covered:
        for i in range(a, e):
            used[i - start] = True
    run = 0
    for u in used:
        run = 0 if u else run + 1
        if run > gap:
            return False
    return True


def brute_force_minimum(table_spans: dict[str, tuple[int, int]], limit: int, gap: int) -> int:
    """The fewest requests covering every point, searching every allowed request.

    A request is any range [s, e) no longer than ``limit``; it serves the points lying
    wholly inside it, must start and end on them, and may not read more than ``gap``
    unused registers in a row.
    """
    names = sorted(table_spans)
    if not names:
        return 0
    starts = {a for a, _ in table_spans.values()}
    ends = {e for _, e in table_spans.values()}
    options: set[frozenset[str]] = set()
    for s in starts:
        for e in ends:
            if not 0 < e - s <= limit:
                continue
            inside = [n for n in names if s <= table_spans[n][0] and table_spans[n][1] <= e]
            covered = [table_spans[n] for n in inside]
            if (inside and min(a for a, _ in covered) == s and max(b for _, b in covered) == e
                    and unused_runs_ok(covered, s, e, gap)):
                options.add(frozenset(inside))
    everything = frozenset(names)
    reached: set[frozenset[str]] = {frozenset()}
    for k in range(1, len(names) + 1):
        reached = {r | o for r in reached for o in options}
        if everything in reached:
            return k
    raise AssertionError("no cover at all: a point is longer than the limit")


def check_plan(points: Mapping[str, Point], plan: list[ReadRequest], limit: int, gap: int) -> None:
    """Every property a plan must have, whatever the map."""
    seen: list[str] = []
    for req in plan:
        bits = req.table in BIT_TABLES
        assert req.function_code == FUNCTION_CODE[req.table]
        assert 1 <= req.count <= (MAX_BITS_PER_READ if bits else limit)
        covered = []
        for name in req.points:
            p = points[name]
            assert p.address is not None
            assert (p.table or "holding") == req.table, f"{req} crosses tables"
            assert req.address <= p.address and p.address + p.registers <= req.end
            covered.append((p.address, p.address + p.registers))
        assert min(a for a, _ in covered) == req.address and max(e for _, e in covered) == req.end
        assert unused_runs_ok(covered, req.address, req.end, gap * 16 if bits else gap)
        seen += req.points
    assert sorted(seen) == sorted(n for n, p in points.items() if p.address is not None)
    order = [(TABLES.index(r.table), r.address) for r in plan]
    assert order == sorted(order), "requests go table by table, by address"


def random_map(rng: random.Random, n: int, limit: int, tables: tuple[str, ...]) -> dict[str, Point]:
    points: dict[str, Point] = {}
    for i in range(n):
        table = rng.choice(tables)
        if table in BIT_TABLES:
            points[f"p{i}"] = pt(rng.randrange(0, 60), "bool", table)
            continue
        type_name = rng.choice([t for t, size in SIZES.items() if size <= limit])
        points[f"p{i}"] = pt(rng.randrange(0, 24), type_name, table)
    return points


@pytest.mark.parametrize("seed", range(40))
def test_plans_are_minimal_for_small_random_maps(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        limit, gap = rng.randint(2, 12), rng.randint(0, 4)
        points = random_map(rng, rng.randint(1, 7), limit, TABLES)
        plan = plan_reads(points, limit, gap)
        check_plan(points, plan, limit, gap)
        for table in TABLES:
            bits = table in BIT_TABLES
            want = brute_force_minimum(spans(points, table), MAX_BITS_PER_READ if bits else limit,
                                       gap * 16 if bits else gap)
            got = sum(1 for r in plan if r.table == table)
            assert got == want, f"{table}: plan {plan} uses {got} requests, {want} suffice"


def test_scattered_energy_meter_map() -> None:
    # SDM630-like: a block, a lone value, then a block, read in 64-register requests
    points = {f"v{i}": pt(2 * i, "float32", "input") for i in range(6)}
    points |= {"p": pt(0x34, "float32", "input"), "f": pt(0x46, "float32", "input"),
               "e1": pt(0x48, "float32", "input"), "e2": pt(0x4A, "float32", "input")}
    plan = plan_reads(points, 64, 8)
    assert [(r.address, r.count) for r in plan] == [(0x00, 12), (0x34, 2), (0x46, 6)]
    plan = plan_reads(points, 64, 16)
    assert [(r.address, r.count) for r in plan] == [(0x00, 12), (0x34, 24)]
    check_plan(points, plan, 64, 16)


def test_gap_fill() -> None:
    points = {"a": pt(0), "b": pt(5), "c": pt(20)}
    assert [(r.address, r.count) for r in plan_reads(points, 125, 4)] == [(0, 6), (20, 1)]
    assert [(r.address, r.count) for r in plan_reads(points, 125, 3)] == [(0, 1), (5, 1), (20, 1)]
    assert [(r.address, r.count) for r in plan_reads(points, 125, 14)] == [(0, 21)]


def test_gap_zero_merges_only_adjacent_points() -> None:
    points = {"a": pt(0, "float32"), "b": pt(2), "c": pt(4)}
    assert [(r.address, r.count) for r in plan_reads(points, 125, 0)] == [(0, 3), (4, 1)]


def test_max_registers_per_read() -> None:
    points = {f"r{i}": pt(i) for i in range(100)}
    for limit in (1, 7, 32, 64, 125):
        plan = plan_reads(points, limit, 8)
        assert len(plan) == -(-100 // limit)
        check_plan(points, plan, limit, 8)


def test_a_multi_register_point_is_never_split() -> None:
    points = {"a": pt(0), "b": pt(1, "uint64"), "c": pt(5, "float32")}
    plan = plan_reads(points, 4, 8)
    assert [(r.address, r.count, r.points) for r in plan] == [(0, 1, ("a",)), (1, 4, ("b",)),
                                                             (5, 2, ("c",))]


def test_never_across_tables() -> None:
    points = {"h": pt(0, table="holding"), "i": pt(1, table="input"), "h2": pt(2, table="holding"),
              "c": pt(0, "bool", "coil"), "d": pt(1, "bool", "discrete")}
    plan = plan_reads(points, 125, 8)
    assert [(r.table, r.address, r.count, r.function_code) for r in plan] == [
        ("coil", 0, 1, 1), ("discrete", 1, 1, 2), ("holding", 0, 3, 3), ("input", 1, 1, 4)]
    check_plan(points, plan, 125, 8)


def test_bit_tables_use_the_bit_limit_and_a_wider_gap() -> None:
    coils = {f"c{i}": pt(i * 100, "bool", "coil") for i in range(30)}
    plan = plan_reads(coils, 8, 8)  # 8 registers, but coils go up to 2000 per request
    assert [(r.address, r.count) for r in plan] == [(0, 1901), (2000, 901)]
    check_plan(coils, plan, 8, 8)
    spaced = {"a": pt(0, "bool", "discrete"), "b": pt(129, "bool", "discrete"),
              "c": pt(300, "bool", "discrete")}
    assert [(r.address, r.count) for r in plan_reads(spaced, 125, 8)] == [(0, 130), (300, 1)]


def test_bit_points_share_a_register() -> None:
    points = {"alarm": pt(10, "bit", bit=0), "fault": pt(10, "bit", bit=7), "level": pt(11)}
    plan = plan_reads(points, 125, 0)
    assert [(r.address, r.count, r.points) for r in plan] == [(10, 2, ("alarm", "fault", "level"))]


def test_a_modbus_point_needs_an_address_and_takes_no_data_identifier() -> None:
    # the planner only ever sees Modbus points: a DL/T 645 point is another model
    with pytest.raises(ValidationError, match="address"):
        Point(di="00-01-00-00", format="XXXXXX.XX")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="di"):
        Point(table="holding", address=1, di="02-01-01-00")  # type: ignore[call-arg]


def test_top_of_the_address_space() -> None:
    points = {"a": pt(0xFFFE, "float32"), "b": pt(0xFFF0)}
    plan = plan_reads(points, 125, 16)
    assert [(r.address, r.end) for r in plan] == [(0xFFF0, 0x10000)]
