"""``edge-agent probe`` for Modbus: read raw registers and show every plausible decoding.

For the technician with a device whose register map is unknown or doubtful: the raw words
in hex, each register as uint16/int16/text, each pair of registers as uint32/int32/float32
in both word orders, and all of them as a string.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from ..errors import DriverError
from ..tools import Line, UsageError
from .bus import ModbusBus
from .datatypes import BIT_TABLES
from .decodings import as_string, fmt_float, pairs, registers
from .planner import FUNCTION_CODE, ReadRequest
from .protocol import open_bus

EXAMPLES = """\
  edge-agent probe --port /dev/ttyUSB0 --unit 1 --address 0x01F4 --count 16
  edge-agent probe --port /dev/ttyUSB0 --baudrate 4800 --parity E --unit 3 --table input --address 0 --count 10
  edge-agent probe --host 192.0.2.60 --unit 1 --table input --address 0x48 --count 4
  edge-agent probe --host 192.0.2.50:8899 --rtu-over-tcp --unit 2 --count 8 --json"""
NOTES = """\
Addresses are the protocol's, from 0, decimal or 0x-hex (a manual's "40001" is holding 0)."""
OPTIONS = ("--unit", "--table", "--address", "--count")

HINTS = {
    "timeout": "no answer: check the unit id, baud rate and parity, A/B wiring, power and termination",
    "crc_error": "damaged answers: usually the wrong baud rate or parity, else noise (termination, shielding)",
    "garbage": "bytes that are no Modbus frame: wrong baud rate or parity, or another protocol on the line",
    "short_frame": "cut-off answers: noise on the line, or the device cannot send this many registers at once",
    "exception_01": "the device does not support this function: try another --table",
    "exception_02": "the address range is not in the device's map: check --address and --count",
    "exception_03": "the device refuses this count: try a smaller --count",
    "bus_unavailable": "the port or host could not be opened",
}


def int_auto(text: str) -> int:
    return int(text, 0)


def add_probe_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--unit", type=int, help="Modbus unit id (default 1)")
    g.add_argument("--table", choices=list(FUNCTION_CODE), help="default holding")
    g.add_argument("--address", type=int_auto, help="first register, e.g. 500 or 0x01F4 (default 0)")
    g.add_argument("--count", type=int, help="registers (or bits) to read (default 10)")


def open_line(line: Line, retries: int = 1) -> ModbusBus:
    """The bus for ``line`` (call inside the event loop)."""
    return open_bus("probe", line.settings(retries))


def request(args: argparse.Namespace) -> tuple[int, ReadRequest]:
    """The unit and what the options ask to read (defaults: unit 1, holding 0, 10 registers)."""
    unit = 1 if args.unit is None else args.unit
    table = args.table or "holding"
    address = 0 if args.address is None else args.address
    count = 10 if args.count is None else args.count
    limit = 2000 if table in BIT_TABLES else 125
    if not 1 <= count <= limit or not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise UsageError(f"--count must be 1..{limit} and the range within 0..65535")
    return unit, ReadRequest(table, address, count, ())


def probe(args: argparse.Namespace, line: Line) -> int:
    unit, req = request(args)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def read() -> tuple[list[int] | list[bool], float]:
        bus = open_line(line)
        try:
            t0 = time.perf_counter()
            words = await bus.read(unit, req)
            return words, time.perf_counter() - t0
        finally:
            await bus.close()

    where = line.describe()
    try:
        words, seconds = asyncio.run(read())
    except DriverError as exc:
        if args.json:
            print(json.dumps({"unit": unit, "line": where, "status": exc.status, "error": str(exc)}))
        else:
            print(f"unit {unit} @ {where}: {exc.status}: {exc}")
            hint = HINTS.get(exc.status)
            if hint:
                print(f"  {hint}")
        return 1
    if args.json:
        print(json.dumps(as_json(unit, where, req, words)))
    else:
        print(f"unit {unit} @ {where}: {req.table} {req.address}..{req.end - 1} "
              f"({req.count}), answered in {seconds * 1000:.0f} ms")
        print(render(req.table, req.address, words))
    return 0


def render(table: str, address: int, words: list[int] | list[bool]) -> str:
    if table in BIT_TABLES:
        return "\n".join(f"  {address + i:5d}  {int(b)}" for i, b in enumerate(words))
    ints = [int(w) for w in words]
    out = ["", f"  {'address':>12}  {'hex':>6}  {'uint16':>6}  {'int16':>6}  text"]
    for r in registers(address, ints):
        out.append(f"  {r.address:5d} 0x{r.address:04X}  {r.hex:>6}  {r.uint16:6d}  {r.int16:6d}  {r.text}")
    pr = pairs(address, ints)
    if pr:
        cols = f"{'uint32':>10} {'int32':>11} {'float32':>13}"
        out += ["", f"  {'registers':<11}  {'high word first (ABCD)':^36}  {'low word first (CDAB)':^36}".rstrip(),
                f"  {'':<11}  {cols}  {cols}"]
        for big, little in pr:
            out.append(f"  {big.address:5d}-{big.address + 1:<5d}  "
                       f"{big.uint32:10d} {big.int32:11d} {fmt_float(big.float32):>13}  "
                       f"{little.uint32:10d} {little.int32:11d} {fmt_float(little.float32):>13}")
    out += ["", f"  as text: \"{as_string(ints)}\""]
    return "\n".join(out)


def as_json(unit: int, where: str, req: ReadRequest, words: list[int] | list[bool]) -> dict[str, Any]:
    doc: dict[str, Any] = {"unit": unit, "line": where, "status": "ok", "table": req.table,
                           "address": req.address, "count": req.count}
    if req.table in BIT_TABLES:
        doc["bits"] = [bool(b) for b in words]
        return doc
    ints = [int(w) for w in words]
    doc["registers"] = [{"address": r.address, "hex": r.hex, "uint16": r.uint16, "int16": r.int16, "text": r.text}
                        for r in registers(req.address, ints)]
    doc["pairs"] = [{"address": b.address,
                     "abcd": {"uint32": b.uint32, "int32": b.int32, "float32": fmt_float(b.float32)},
                     "cdab": {"uint32": le.uint32, "int32": le.int32, "float32": fmt_float(le.float32)}}
                    for b, le in pairs(req.address, ints)]
    doc["text"] = as_string(ints)
    return doc
