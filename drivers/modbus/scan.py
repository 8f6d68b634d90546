"""``edge-agent scan`` for Modbus: which unit ids answer on a line, and which catalog profiles fit them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass

from ..catalog import catalog, resolve_profile
from ..errors import DriverError, ExceptionResponse, NoResponse
from ..tools import Line, UsageError
from .bus import ModbusBus
from .identify import Fit, fitting_profiles
from .planner import ReadRequest
from .points import ModbusProfile
from .probe import open_line

EXAMPLES = """\
  edge-agent scan --port /dev/ttyUSB0
  edge-agent scan --port /dev/ttyUSB0 --baudrate 9600,4800,2400 --parity N,E --units 1-32
  edge-agent scan --host 192.0.2.50:8899 --rtu-over-tcp --units 1-10"""
NOTES = """\
Asks each unit id for holding register 0 (change with --register); any answer, even an
exception, means a device is there. Damaged answers (crc_error, garbage) suggest a device
at another speed or parity. Then every Modbus profile of the catalog is tried on each
device found (--no-profiles skips it). A silent unit costs --timeout (default 0.5 s, what
slow sensors need): 247 units take about two minutes per setting; give --timeout 0.2 to
sweep faster on a line of quick devices."""

NOISE = ("crc_error", "garbage", "short_frame")


@dataclass
class Found:
    unit: int
    status: str  # ok, exception_XX, or a noise status
    detail: str


def parse_units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        a, b = int(lo), int(hi or lo)
        if not 0 <= a <= b <= 247:
            raise ValueError(f"bad unit range '{part}' (units are 0..247)")
        units += range(a, b + 1)
    return units


def add_scan_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--units", default="1-247", metavar="RANGES", help="e.g. 1-32 or 1,2,10-20 (default 1-247)")
    g.add_argument("--register", default="holding:0", metavar="TABLE:ADDRESS",
                   help="what each unit is asked for (default holding:0)")
    g.add_argument("--no-profiles", action="store_true", help="do not try the catalog's profiles")


def scan(args: argparse.Namespace, lines: list[Line]) -> int:
    """Scan each line setting in turn; stop at the first where a unit answers unless ``all_settings``."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        units = parse_units(args.units)
        table, _, address = args.register.partition(":")
        probe = ReadRequest(table, int(address or "0", 0), 1, ())
        _ = probe.function_code
    except (ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from None
    return asyncio.run(scan_lines(args, lines, units, probe))


async def scan_lines(args: argparse.Namespace, lines: list[Line], units: list[int], probe: ReadRequest) -> int:
    answered_anywhere = False
    for line in lines:
        bus = open_line(line, retries=0)
        try:
            found = await scan_setting(bus, units, probe, line.describe())
            answering = [f for f in found if f.status not in NOISE]
            report(line.describe(), found)
            if answering and not args.no_profiles:
                await suggest(bus, answering)
        finally:
            await bus.close()
        answered_anywhere |= bool(answering)
        if answering and not args.all_settings:
            return 0
    if not answered_anywhere:
        print("no unit answered: check the wiring (A/B), power, termination, the speed and parity")
    return 0 if answered_anywhere else 1


async def scan_setting(bus: ModbusBus, units: list[int], probe: ReadRequest, line: str) -> list[Found]:
    tty = sys.stderr.isatty()
    print(f"scanning {line}: units {units[0]}..{units[-1]} ({len(units)})", file=sys.stderr, flush=True)
    found: list[Found] = []
    t0 = time.monotonic()
    for i, unit in enumerate(units, start=1):
        try:
            words = await bus.read(unit, probe)
            found.append(Found(unit, "ok", f"{probe.table} {probe.address} = 0x{int(words[0]):04X}"))
        except ExceptionResponse as exc:
            found.append(Found(unit, exc.status, f"exception {exc.code} to {probe.table} {probe.address}"))
        except NoResponse:
            pass
        except DriverError as exc:
            if exc.status == "bus_unavailable":
                print(f"edge-agent scan: {line}: {exc}", file=sys.stderr)
                return found
            found.append(Found(unit, exc.status, str(exc)))
        if found and found[-1].unit == unit:
            what = "answers" if found[-1].status not in NOISE else f"sends damaged frames ({found[-1].status})"
            msg = f"  unit {unit} {what}"
            print(f"\r{msg:<60}" if tty else msg, file=sys.stderr, flush=True)
        if tty:
            print(f"\r  unit {unit} ({i}/{len(units)}), {len(found)} found", end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    print(f"scanned {line}: {len(units)} units in {time.monotonic() - t0:.1f} s, "
          f"{sum(f.status not in NOISE for f in found)} answered", file=sys.stderr, flush=True)
    return found


def report(line: str, found: list[Found]) -> None:
    answering = [f for f in found if f.status not in NOISE]
    noise = [f for f in found if f.status in NOISE]
    if answering:
        print(f"{line}: units that answer: {', '.join(str(f.unit) for f in answering)}")
        for f in answering:
            print(f"  unit {f.unit}: {f.detail}")
    if noise:
        print(f"{line}: damaged answers from units {', '.join(str(f.unit) for f in noise)}: "
              "a device at another speed or parity, or noise on the line")


async def suggest(bus: ModbusBus, answering: list[Found]) -> None:
    profiles = [p for p in (resolve_profile(n) for n in catalog()) if isinstance(p, ModbusProfile)]
    print("profiles that fit (every request of the profile answered and decoded):")
    for f in answering:
        fits = await fitting_profiles(bus, f.unit, profiles)
        if not fits:
            print(f"  unit {f.unit}: none in the catalog; 'edge-agent probe' shows its raw registers")
            continue
        best, rest = fits[0], fits[1:]
        print(f"  unit {f.unit}: {best.profile.name}  ({describe_fit(best)})")
        print(f"      {sample(best)}")
        if rest:
            print(f"      also answers: {', '.join(x.profile.name for x in rest)}")


def describe_fit(fit: Fit) -> str:
    return f"{fit.requests} request{'s' if fit.requests > 1 else ''}, {fit.registers} registers"


def sample(fit: Fit, limit: int = 6) -> str:
    items = []
    for name, value in list(fit.values.items())[:limit]:
        unit = fit.profile.unit_of(name)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        items.append(f"{name}={shown}{(' ' + unit) if unit and unit != 'bool' else ''}")
    more = len(fit.values) - limit
    return ", ".join(items) + (f", ... ({more} more)" if more > 0 else "")
