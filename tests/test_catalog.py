"""Checks over the whole device catalog (DESIGN principles 1, 6 and 7).

Every profile under ``drivers/profiles/<vendor>/<model>.yaml`` loads, is laid out and named
by that path, has unique points that do not overlap, units from the vocabulary, a ``sim:``
block the type can carry, and a fixture beside it (``<model>.fixture.yaml``): a recorded
register dump (or DL/T 645 value bytes) and the values it must decode to, replayed through
the real device classes, read plans and decoders; the simulator serves values each
profile decodes back. The supported-devices doc must match the catalog.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from drivers.catalog import CATALOG_DIR, catalog, load_profile_file, resolve_profile
from drivers.catalog_doc import DOC_PATH, REGENERATE, render_supported_devices
from drivers.dlt645.bus import DLT645Device
from drivers.modbus.datatypes import BIT_TABLES, TYPES, Table, decode, encode
from drivers.modbus.device import ModbusDevice
from drivers.modbus.planner import MAX_BITS_PER_READ, ReadRequest, plan_reads
from drivers.modbus.points import ModbusPoint as Point
from drivers.modbus.points import ModbusProfile as Profile
from drivers.modbus.points import points_overlap
from drivers.modbus.simulator.server import SimSlave
from drivers.profile import SimSpec
from drivers.reading import Value
from drivers.vocabulary import VOCABULARY
from drivers.yamlsource import SourceError
from tests.helpers import read_all

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_SUFFIX = ".fixture.yaml"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
POINT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

PROFILE_FILES = sorted(p for p in CATALOG_DIR.rglob("*.yaml") if not p.name.endswith(FIXTURE_SUFFIX))
FIXTURE_FILES = sorted(CATALOG_DIR.rglob(f"*{FIXTURE_SUFFIX}"))


def rel(path: Path) -> str:
    return str(path.relative_to(CATALOG_DIR))


def fixture_of(profile_path: Path) -> Path:
    return profile_path.with_name(profile_path.stem + FIXTURE_SUFFIX)


def protocol_of(path: Path) -> str | None:
    """The protocol a profile file declares, read without validating (a broken file must
    fail its own tests, not the collection of every other)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    return str(data.get("protocol", "modbus")) if isinstance(data, dict) else None


by_file = pytest.mark.parametrize("path", PROFILE_FILES, ids=rel)
MODBUS_FILES = [p for p in PROFILE_FILES if protocol_of(p) == "modbus"]
DLT645_FILES = [p for p in PROFILE_FILES if protocol_of(p) == "dlt645"]


def test_catalog_is_not_empty() -> None:
    assert len(PROFILE_FILES) >= 10


# --- every profile on its own ------------------------------------------------------------


@by_file
def test_profile_loads(path: Path) -> None:
    profile = load_profile_file(path)
    assert profile.description, f"{rel(path)}: say where the map comes from in 'description'"


@by_file
def test_path_is_vendor_slash_model(path: Path) -> None:
    parts = path.relative_to(CATALOG_DIR).parts
    assert len(parts) == 2, f"{rel(path)}: profiles live at <vendor>/<model>.yaml"
    vendor_dir, model = parts[0], path.stem
    assert SLUG.match(vendor_dir) and SLUG.match(model), f"{rel(path)}: lower-case kebab names"
    profile = load_profile_file(path)
    assert profile.name == f"{vendor_dir}-{model}", (
        f"{rel(path)}: profile name '{profile.name}' should be '{vendor_dir}-{model}' "
        "(<vendor folder>-<file name>)")
    first_word = re.sub(r"[^a-z0-9]", "", profile.vendor.split()[0].lower())
    assert first_word == vendor_dir, (
        f"{rel(path)}: vendor '{profile.vendor}' does not belong in folder '{vendor_dir}/'")


def test_profile_names_are_unique() -> None:
    seen: dict[str, str] = {}
    for path in PROFILE_FILES:
        name = load_profile_file(path).name
        assert name not in seen, f"profile name '{name}' in both {seen[name]} and {rel(path)}"
        seen[name] = rel(path)
    assert set(catalog()) == set(seen)


@by_file
def test_point_names_and_units(path: Path) -> None:
    profile = load_profile_file(path)
    for name, p in profile.points.items():
        assert POINT_NAME.match(name), f"{rel(path)}: point '{name}' is not snake_case"
        known = VOCABULARY.get(name)
        if known is None:
            assert p.unit is not None, f"{rel(path)}: '{name}' is outside the vocabulary: add 'unit:'"
        else:
            assert p.unit in (None, known.unit), (
                f"{rel(path)}: '{name}' is vocabulary with unit '{known.unit}', not '{p.unit}'")


def test_overlap_rules() -> None:
    def pt(address: int, type_name: str, table: str = "holding", bit: int | None = None) -> Point:
        return Point(table=table, address=address, type=type_name, bit=bit)  # type: ignore[arg-type]

    assert points_overlap(pt(0, "float32"), pt(1, "uint16"))
    assert not points_overlap(pt(0, "float32"), pt(2, "uint16"))
    assert not points_overlap(pt(0, "uint16"), pt(0, "uint16", "input"))
    assert not points_overlap(pt(0, "bool", "coil"), pt(0, "bool", "discrete"))
    assert not points_overlap(pt(5, "bit", bit=0), pt(5, "bit", bit=1))
    assert points_overlap(pt(5, "bit", bit=0), pt(5, "bit", bit=0))
    assert points_overlap(pt(5, "bit", bit=0), pt(5, "uint16"))


@by_file
def test_points_do_notpoints_overlap(path: Path) -> None:
    profile = load_profile_file(path)
    if profile.protocol == "dlt645":
        dis = [p.di for p in profile.points.values()]
        assert len(set(dis)) == len(dis), f"{rel(path)}: a data identifier is read twice"
        return
    for (na, a), (nb, b) in combinations(profile.points.items(), 2):
        assert not points_overlap(a, b), f"{rel(path)}: points '{na}' and '{nb}' overlap"


def _sim_values(spec: SimSpec) -> list[float | bool | str]:
    """The values a point's simulation starts from or is bounded by."""
    def clip(v: float) -> float:
        v = v if spec.min is None else max(spec.min, v)
        return v if spec.max is None else min(spec.max, v)

    if spec.pattern == "constant":
        return [spec.value]
    if spec.pattern == "daily":
        swing = abs(spec.amplitude) + spec.noise
        return [clip(spec.base - swing), clip(spec.base + swing)]
    if spec.pattern == "walk":
        return [clip(v) for v in (spec.base, spec.min, spec.max) if v is not None]
    if spec.pattern == "counter":
        return [spec.base, spec.base + spec.rate * 24 * 30]  # a month of counting
    if spec.role == "rainfall":
        return [spec.base, spec.base + spec.rate * 24]  # a day of rain at the storm's peak
    return [clip(spec.base), clip(spec.base + spec.amplitude)]


@by_file
def test_every_point_simulates_within_its_type(path: Path) -> None:
    """The simulator serves believable values only if the type can carry the sim's range."""
    profile = load_profile_file(path)
    for name, p in profile.points.items():
        assert p.sim is not None, f"{rel(path)}: point '{name}' has no sim: block"
        if not isinstance(p, Point):
            continue  # DL/T 645: test_dlt645_points_simulate_within_their_bcd_layout
        assert isinstance(profile, Profile)
        t = TYPES[p.type_name]
        for v in _sim_values(p.sim):
            if not t.numeric:
                assert isinstance(v, bool | str), f"{rel(path)}: '{name}' simulates {v!r}"
                continue
            assert not isinstance(v, str), f"{rel(path)}: '{name}' simulates text {v!r}"
            order = profile.order_of(p)
            kw: dict[str, Any] = dict(byte_order=order[0], word_order=order[1], scale=p.scale,
                                      offset=p.offset, length=p.length)
            back = decode(encode(v, p.type_name, **kw), p.type_name, **kw)
            assert isinstance(back, int | float)
            tol = abs(p.scale) / 2 + abs(float(v)) * 1e-6 + 1e-9
            assert abs(back - float(v)) <= tol, (
                f"{rel(path)}: '{name}' simulates {v}, but {p.type_name} × {p.scale} carries {back}")


def _bcd_limit(fmt: str, signed: bool) -> float:
    """The largest magnitude a BCD layout such as XXX.XXX carries (signed: top digit ≤ 7)."""
    whole, _, frac = fmt.partition(".")
    digits = len(whole) + len(frac)
    units = (8 * 10 ** (digits - 1) if signed else 10**digits) - 1
    return units / 10 ** len(frac)


@pytest.mark.parametrize("path", DLT645_FILES, ids=rel)
def test_dlt645_points_simulate_within_their_bcd_layout(path: Path) -> None:
    profile = load_profile_file(path)
    device = DLT645Device(DataBus({}), "000000000001", profile)  # type: ignore[arg-type]
    for item in device.plan:
        spec = profile.points[item.name].sim
        assert spec is not None
        for v in _sim_values(spec):
            assert isinstance(v, int | float) and not isinstance(v, bool)
            raw = (v - item.offset) / item.scale
            assert (item.signed or raw >= 0) and abs(raw) <= _bcd_limit(item.format, item.signed), (
                f"{rel(path)}: '{item.name}' simulates {v}, which BCD {item.format} cannot carry")


# --- read plans --------------------------------------------------------------------------


def _plan(profile: Profile) -> list[ReadRequest]:
    return plan_reads(profile.points, profile.max_registers_per_read, profile.read_gap)


@by_file
def test_read_plan_fits_the_device(path: Path) -> None:
    profile = load_profile_file(path)
    if not isinstance(profile, Profile):
        assert profile.protocol == "dlt645"
        return  # one request per data identifier: test_points_do_notpoints_overlap
    plan = _plan(profile)
    modbus_points = set(profile.points)
    covered: list[str] = []
    for req in plan:
        limit = MAX_BITS_PER_READ if req.table in BIT_TABLES else profile.max_registers_per_read
        assert 1 <= req.count <= limit, f"{rel(path)}: {req} reads more than {limit}"
        assert req.end - 1 <= 0xFFFF
        for name in req.points:
            p = profile.points[name]
            assert p.address is not None
            assert (p.table or "holding") == req.table, f"{rel(path)}: {req} crosses tables"
            assert req.address <= p.address and p.address + p.registers <= req.end
        covered += req.points
    assert sorted(covered) == sorted(modbus_points), f"{rel(path)}: plan misses or repeats points"


# --- fixtures ----------------------------------------------------------------------------


class Fixture(BaseModel):
    """A ``<model>.fixture.yaml``: what a device answered and what that must decode to."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    registers: dict[Table, dict[int, list[int]]] = {}  # Modbus: table → start → words
    data: dict[str, str] = {}  # DL/T 645: DI → value bytes (hex) before the 0x33 offset
    values: dict[str, Any]


def load_fixture(path: Path) -> Fixture:
    return Fixture.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def register_space(fixture: Fixture) -> dict[str, dict[int, int]]:
    """The dump as table → address → word (bit tables: 0 or 1), checking it is well formed."""
    space: dict[str, dict[int, int]] = {}
    for table, blocks in fixture.registers.items():
        cells = space.setdefault(table, {})
        top = 1 if table in BIT_TABLES else 0xFFFF
        for start, words in blocks.items():
            for i, w in enumerate(words):
                assert 0 <= w <= top, f"{table} {start + i:#06x}: {w:#x} is not a valid value"
                assert start + i not in cells, f"{table} {start + i:#06x} dumped twice"
                cells[start + i] = w
    return space


class DumpBus:
    """A stand-in for ModbusBus that answers each request from a fixture's dump."""

    def __init__(self, space: dict[str, dict[int, int]]) -> None:
        self.space = space
        self.requests: list[ReadRequest] = []

    async def read(self, unit: int, req: ReadRequest) -> list[int] | list[bool]:
        self.requests.append(req)
        cells = self.space.get(req.table, {})
        missing = [a for a in range(req.address, req.end) if a not in cells]
        assert not missing, (f"the plan reads {req.table} {req.address:#06x}+{req.count}, "
                             f"the dump lacks {', '.join(f'{a:#06x}' for a in missing)}")
        words = [cells[a] for a in range(req.address, req.end)]
        return [bool(w) for w in words] if req.table in BIT_TABLES else words


class DataBus:
    """A stand-in for DLT645Bus that answers each DI with a fixture's value bytes."""

    name = "fixture"

    def __init__(self, data: dict[str, str]) -> None:
        self.data = {di.replace("-", "").lower(): bytes.fromhex(v) for di, v in data.items()}

    async def read(self, address: str, di: int) -> bytes:
        key = f"{di:08x}"
        assert key in self.data, f"the fixture has no bytes for DI {key}"
        return self.data[key]


def replay(profile: Profile, fixture: Fixture) -> dict[str, Value]:
    """Decode a fixture the way a poll would: the real device class, plan and decoders."""
    if profile.protocol == "dlt645":
        assert fixture.data and not fixture.registers, "a DL/T 645 fixture holds 'data'"
        device: Any = DLT645Device(DataBus(fixture.data), "000000000001", profile)  # type: ignore[arg-type]
    else:
        assert fixture.registers and not fixture.data, "a Modbus fixture holds 'registers'"
        device = ModbusDevice(DumpBus(register_space(fixture)), 1, profile)  # type: ignore[arg-type]
    values: dict[str, Value] = asyncio.run(read_all(device))
    return values


def same(got: Value, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, str) or isinstance(got, str):
        return got == want
    return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9)


@by_file
def test_profile_has_a_fixture(path: Path) -> None:
    assert fixture_of(path).exists(), (
        f"{rel(path)} has no fixture: add {rel(fixture_of(path))} with a recorded dump "
        "and the values it decodes to")


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=rel)
def test_fixture_belongs_to_a_profile(path: Path) -> None:
    profile_path = path.with_name(path.name.removesuffix(FIXTURE_SUFFIX) + ".yaml")
    assert profile_path.exists(), f"{rel(path)} has no profile beside it"


@pytest.mark.parametrize("path", [p for p in PROFILE_FILES if fixture_of(p).exists()], ids=rel)
def test_fixture_decodes_to_its_values(path: Path) -> None:
    profile = load_profile_file(path)
    fixture = load_fixture(fixture_of(path))
    assert set(fixture.values) == set(profile.points), (
        f"{rel(fixture_of(path))}: 'values' must name every point of the profile")
    got = replay(profile, fixture)
    wrong = {n: (got.get(n), want) for n, want in fixture.values.items() if not same(got.get(n), want)}
    assert not wrong, f"{rel(fixture_of(path))}: decoded ≠ expected: {wrong}"


# --- the replay itself must catch a wrong decoder ----------------------------------------


def test_replay_catches_a_word_order_mistake() -> None:
    """A fixture is an independent check: the same dump read little-word fails."""
    path = CATALOG_DIR / "eastron" / "sdm630.yaml"
    profile = load_profile_file(path)
    swapped = profile.model_copy(update={"word_order": "little"})
    fixture = load_fixture(fixture_of(path))
    got = replay(swapped, fixture)
    assert not same(got["voltage_l2"], fixture.values["voltage_l2"])


def test_replay_reports_registers_missing_from_the_dump() -> None:
    profile = load_profile_file(CATALOG_DIR / "renke" / "rs-ws-n01.yaml")
    short = Fixture(registers={"holding": {0: [0x0258]}}, values={})
    with pytest.raises(AssertionError, match="lacks 0x0001"):
        replay(profile, short)


def test_float32_words_in_fixtures_are_ieee754() -> None:
    """Spot-check the hand-written words against the standard, independent of our code."""
    assert struct.unpack(">f", bytes.fromhex("43660000"))[0] == 230.0
    assert struct.unpack(">f", bytes.fromhex("479C4000"))[0] == 80000.0


class SimBus:
    """A stand-in for ModbusBus that answers from an in-process simulated slave."""

    def __init__(self, slave: SimSlave) -> None:
        self.slave = slave

    async def read(self, unit: int, req: ReadRequest) -> list[int] | list[bool]:
        words = self.slave.read(req.table, req.address, req.count, time.time())
        assert words is not None, f"the simulator refuses {req}"
        return words


@pytest.mark.parametrize("path", MODBUS_FILES, ids=rel)
def test_simulator_serves_what_the_profile_decodes(path: Path) -> None:
    profile = load_profile_file(path)
    slave = SimSlave(unit=1, profile=profile)
    device = ModbusDevice(SimBus(slave), 1, profile)  # type: ignore[arg-type]
    for _ in range(3):
        values: dict[str, Value] = asyncio.run(read_all(device))
        wrong = {n: v for n, v in values.items() if not slave.was_served(n, v)}
        assert not wrong, f"{rel(path)}: polled values the simulator did not serve: {wrong}"


# --- profiles by path ----------------------------------------------------------------------


@by_file
def test_profile_by_path_loads_like_the_catalog_one(path: Path, tmp_path: Path) -> None:
    name = load_profile_file(path).name
    own = tmp_path / "site" / "profiles" / "my-device.yaml"
    own.parent.mkdir(parents=True)
    shutil.copyfile(path, own)
    assert resolve_profile(str(own)) == resolve_profile(name)
    assert resolve_profile("./profiles/my-device.yaml", base_dir=own.parent.parent) == resolve_profile(name)


def test_catalog_ignores_fixtures() -> None:
    assert all(not p.name.endswith(FIXTURE_SUFFIX) for p in catalog().values())
    assert sorted(catalog().values()) == PROFILE_FILES


# --- the generated supported-devices doc -----------------------------------------------------


def test_supported_devices_doc_is_current() -> None:
    doc = ROOT / DOC_PATH
    committed = doc.read_text(encoding="utf-8") if doc.exists() else ""
    generated = render_supported_devices()
    if committed != generated:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), generated.splitlines(keepends=True),
            fromfile=f"{DOC_PATH} (committed)", tofile="generated"))[:40])
        pytest.fail(f"{DOC_PATH} differs from the catalog; regenerate it with\n"
                    f"    .venv/bin/{REGENERATE}\n{diff}")


def test_supported_devices_doc_lists_every_profile() -> None:
    text = render_supported_devices()
    for name in catalog():
        assert f"`{name}`" in text
    assert "µg/m³" in text and "(kWh)" in text


def test_doc_generator_writes_utf8_in_a_c_locale() -> None:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": ""}
    out = subprocess.run([sys.executable, "-m", "drivers.catalog_doc"], cwd=ROOT, env=env,
                         capture_output=True, check=True)
    assert out.stdout.decode("utf-8") == render_supported_devices()


def test_dtsu666_reads_the_primary_side_energies() -> None:
    """CHINT manuals ZTY0.464.1267 / ZTY0.464.1002 (and mbmd, evcc): ImpEp/ExpEp at 0x101E/0x1028
    are primary-side; 0x401E/0x4028 are secondary-side, off by the CT ratio behind a CT."""
    p = resolve_profile("chint-dtsu666")
    assert (p.points["energy_import"].address, p.points["energy_export"].address) == (0x101E, 0x1028)
    assert p.points["power_factor"].scale == 0.001
    assert all(pt.address is not None and pt.address < 0x4000 for pt in p.points.values())


def test_devices_naming_one_profile_file_share_one_profile(tmp_path: Path) -> None:
    """Fifty meters of one model hold one profile (memory on a Pi), and an edited file is
    read again (a reload sees the change)."""
    source = next(p for p in sorted(CATALOG_DIR.rglob("*.yaml")) if not p.name.endswith(".fixture.yaml"))
    mine = tmp_path / "meter.yaml"
    mine.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    first, second = resolve_profile(str(mine)), resolve_profile("meter.yaml", tmp_path)
    assert first is second
    text = mine.read_text(encoding="utf-8")
    name = first.name
    mine.write_text(text.replace(f"name: {name}", f"name: {name}-v2", 1), encoding="utf-8")
    edited = resolve_profile(str(mine))
    assert edited is not first and edited.name == f"{name}-v2"


def test_an_invalid_profile_file_is_named_as_the_config_gave_it(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "bad.yaml").write_text("name: bad\nprotocol: modbus\npoints: {}\n", encoding="utf-8")
    with pytest.raises(SourceError) as raised:
        resolve_profile("sub/../bad.yaml", tmp_path)
    assert {p.file for p in raised.value.problems} == {str(tmp_path / "sub/../bad.yaml")}
