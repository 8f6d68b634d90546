"""``edge-agent probe``: read raw registers from one device and show every plausible decoding.

For the technician with a device whose register map is unknown or doubtful: the raw words
in hex, each register as uint16/int16/text, each pair of registers as uint32/int32/float32
in both word orders, and all of them as a string. The line options here are shared with
``edge-agent scan``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from drivers.datatypes import BIT_TABLES
from drivers.errors import DriverError
from drivers.modbus.bus import BusKind, ModbusBus
from drivers.modbus.decodings import as_string, fmt_float, pairs, registers
from drivers.planner import FUNCTION_CODE, ReadRequest

EPILOG = """examples:
  edge-agent probe --port /dev/ttyUSB0 --unit 1 --address 0x01F4 --count 16
  edge-agent probe --port /dev/ttyUSB0 --baudrate 4800 --parity E --unit 3 --table input --address 0 --count 10
  edge-agent probe --host 192.0.2.60 --unit 1 --table input --address 0x48 --count 4
  edge-agent probe --host 192.0.2.50:8899 --rtu-over-tcp --unit 2 --count 8 --json
Addresses are the protocol's, from 0, decimal or 0x-hex (a manual's "40001" is holding 0).
Stop the daemon first if it owns the same serial port. Exit status 0 when the device
answered, 1 when it did not (the reason and what to check are printed).
DL/T 645 meters are not probed yet (a --di option for data identifiers is planned)."""

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


def add_line_arguments(p: argparse.ArgumentParser, many: bool = False) -> None:
    """--port/--host and the serial settings; with ``many`` the serial settings take lists."""
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEVICE", help="serial port, e.g. /dev/ttyUSB0")
    where.add_argument("--host", metavar="HOST[:PORT]", help="Modbus TCP device or serial-to-Ethernet converter")
    p.add_argument("--rtu-over-tcp", action="store_true",
                   help="with --host: RTU frames over TCP (a transparent converter), not Modbus TCP")
    if many:
        p.add_argument("--baudrate", default="9600", metavar="B[,B...]",
                       help="serial speeds to try, e.g. 9600,4800,2400 (default 9600)")
        p.add_argument("--parity", default="N", metavar="P[,P...]", help="parities to try: N, E, O (default N)")
    else:
        p.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
        p.add_argument("--parity", choices=["N", "E", "O"], default="N", help="parity (default N)")
    p.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    p.add_argument("--timeout", type=float, default=0.5, metavar="SECONDS", help="per request (default 0.5)")


def open_bus(args: argparse.Namespace, baudrate: int, parity: str, retries: int = 1) -> ModbusBus:
    """The bus the options name (call inside the event loop)."""
    if args.port:
        return ModbusBus("probe", "serial", port=args.port, baudrate=baudrate, parity=parity,
                         stopbits=args.stopbits, timeout=args.timeout, retries=retries)
    host, _, port = args.host.partition(":")
    kind: BusKind = "rtu-over-tcp" if args.rtu_over_tcp else "tcp"
    return ModbusBus("probe", kind, host=host, tcp_port=int(port or 502), timeout=args.timeout, retries=retries)


def describe_line(args: argparse.Namespace, baudrate: int, parity: str) -> str:
    if args.port:
        return f"{args.port} {baudrate} 8{parity}{args.stopbits}"
    return f"{args.host} ({'RTU over TCP' if args.rtu_over_tcp else 'Modbus TCP'})"


def int_auto(text: str) -> int:
    return int(text, 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="read raw registers from a device and show every plausible decoding",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_line_arguments(p)
    p.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    p.add_argument("--table", choices=list(FUNCTION_CODE), default="holding", help="default holding")
    p.add_argument("--address", type=int_auto, default=0, help="first register, e.g. 500 or 0x01F4 (default 0)")
    p.add_argument("--count", type=int, default=10, help="registers (or bits) to read (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    limit = 2000 if args.table in BIT_TABLES else 125
    if not 1 <= args.count <= limit or not 0 <= args.address <= 0xFFFF or args.address + args.count > 0x10000:
        print(f"edge-agent probe: --count must be 1..{limit} and the range within 0..65535", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    req = ReadRequest(args.table, args.address, args.count, ())

    async def read() -> tuple[list[int] | list[bool], float]:
        bus = open_bus(args, args.baudrate, args.parity)
        try:
            t0 = time.perf_counter()
            words = await bus.read(args.unit, req)
            return words, time.perf_counter() - t0
        finally:
            await bus.close()

    line = describe_line(args, args.baudrate, args.parity)
    try:
        words, seconds = asyncio.run(read())
    except DriverError as exc:
        if args.json:
            print(json.dumps({"unit": args.unit, "line": line, "status": exc.status, "error": str(exc)}))
        else:
            print(f"unit {args.unit} @ {line}: {exc.status}: {exc}")
            hint = HINTS.get(exc.status)
            if hint:
                print(f"  {hint}")
        return 1
    if args.json:
        print(json.dumps(as_json(args, line, words)))
    else:
        print(f"unit {args.unit} @ {line}: {args.table} {args.address}..{args.address + args.count - 1} "
              f"({args.count}), answered in {seconds * 1000:.0f} ms")
        print(render(args.table, args.address, words))
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


def as_json(args: argparse.Namespace, line: str, words: list[int] | list[bool]) -> dict[str, Any]:
    doc: dict[str, Any] = {"unit": args.unit, "line": line, "status": "ok", "table": args.table,
                           "address": args.address, "count": args.count}
    if args.table in BIT_TABLES:
        doc["bits"] = [bool(b) for b in words]
        return doc
    ints = [int(w) for w in words]
    doc["registers"] = [{"address": r.address, "hex": r.hex, "uint16": r.uint16, "int16": r.int16, "text": r.text}
                        for r in registers(args.address, ints)]
    doc["pairs"] = [{"address": b.address,
                     "abcd": {"uint32": b.uint32, "int32": b.int32, "float32": fmt_float(b.float32)},
                     "cdab": {"uint32": le.uint32, "int32": le.int32, "float32": fmt_float(le.float32)}}
                    for b, le in pairs(args.address, ints)]
    doc["text"] = as_string(ints)
    return doc
