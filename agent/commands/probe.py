"""``edge-agent probe``: read raw registers from one device and show every plausible decoding.

For the technician with a device whose register map is unknown or doubtful: the raw words
in hex, each register as uint16/int16/text, each pair of registers as uint32/int32/float32
in both word orders, and all of them as a string. The line options here are shared with
``edge-agent scan``.

With ``--dlt645`` it reads data identifiers from a DL/T 645-2007 meter instead: the value
bytes as on the wire (0x33 removed, low byte first), the value decoded with its unit when
the identifier is in the standard's table, else every plausible BCD decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import termios
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.dlt645 import codec as dlt_codec
from drivers.dlt645 import decodings as dlt
from drivers.dlt645.bus import DLT645Bus
from drivers.errors import BusUnavailable, DriverError
from drivers.modbus.bus import BusKind, ModbusBus
from drivers.modbus.datatypes import BIT_TABLES
from drivers.modbus.decodings import as_string, fmt_float, pairs, registers
from drivers.modbus.planner import FUNCTION_CODE, ReadRequest

EPILOG = """examples:
  edge-agent probe --port /dev/ttyUSB0 --unit 1 --address 0x01F4 --count 16
  edge-agent probe --port /dev/ttyUSB0 --baudrate 4800 --parity E --unit 3 --table input --address 0 --count 10
  edge-agent probe --host 192.0.2.60 --unit 1 --table input --address 0x48 --count 4
  edge-agent probe --host 192.0.2.50:8899 --rtu-over-tcp --unit 2 --count 8 --json
  edge-agent probe --port /dev/ttyUSB0 --dlt645 --di 00-01-00-00 --di 02-01-01-00
  edge-agent probe --port /dev/ttyUSB0 --dlt645 --meter 123456789012 --di 04-00-04-01 --json
Addresses are the protocol's, from 0, decimal or 0x-hex (a manual's "40001" is holding 0).
DL/T 645 meters (--dlt645): 2400 8E1 unless --baudrate/--parity say otherwise. Without
--meter the address is read first (0x13 to AAAAAAAAAAAA) and printed; that works only
with one meter on the line. Each --di (DI3-DI2-DI1-DI0, as the standard's tables print
it) shows the value bytes, then the value with its unit when the identifier is a common
one, else every plausible BCD decoding (0 to 4 decimals, signed variants): the format
that fits is what the profile's point declares.
Stop the daemon first if it owns the same serial port. Exit status 0 when the device
answered, 1 when it did not, or a meter failed any identifier (the reason and what to
check are printed)."""

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

DLT645_HINTS = {
    "timeout": "no answer: check the meter address (--meter; leave it out to read it when the meter is alone "
               "on the line), baud rate and parity (most meters: 2400 8E1, older ones 1200 8E1), "
               "A/B wiring, power",
    "crc_error": "damaged answers: usually the wrong baud rate or parity (most meters: 2400 8E1), else noise",
    "garbage": "bytes that are no DL/T 645 frame: wrong baud rate or parity (2400 8E1), A/B swapped, "
               "another protocol on the line, or an answer from another meter",
    "short_frame": "cut-off answers: noise on the line, or the wrong baud rate",
    "exception_01": "the meter refused the request (other error): check the identifier",
    "exception_02": "the meter has no data for this identifier: check it in the meter's manual",
    "exception_04": "the meter wants a password or authorisation for this identifier",
    "bus_unavailable": "the port could not be opened or set to these line settings "
                       "(is the daemon or another program using it?)",
}
READ_ADDRESS_HINTS = {
    "timeout": "no meter answered the read-address request: check the baud rate and parity (most meters: "
               "2400 8E1, older ones 1200 8E1), A/B wiring, power; a meter that does not answer it needs "
               "--meter (the address is on its nameplate)",
    "collision": "several meters answering the read-address request at once look like this too: "
                 "give the address with --meter",
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
    else:  # defaults depend on the protocol (see line_settings)
        p.add_argument("--baudrate", type=int, help="serial speed (default 9600; 2400 with --dlt645)")
        p.add_argument("--parity", choices=["N", "E", "O"], help="parity (default N; E with --dlt645)")
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


def line_settings(args: argparse.Namespace) -> tuple[int, str]:
    """The baud rate and parity to probe with: as given, else the protocol's usual ones."""
    if args.dlt645:
        return args.baudrate or 2400, args.parity or "E"
    return args.baudrate or 9600, args.parity or "N"


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
    g = p.add_argument_group("DL/T 645 meters")
    g.add_argument("--dlt645", action="store_true", help="probe a DL/T 645-2007 meter (default 2400 8E1)")
    g.add_argument("--meter", metavar="ADDRESS",
                   help="meter address, up to 12 digits as printed on the meter "
                        "(default: read it, with one meter on the line)")
    g.add_argument("--di", action="append", metavar="DI",
                   help="data identifier to read, e.g. 02-01-01-00 (repeat for more)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dlt645:
        return run_dlt645(args)
    if args.meter or args.di:
        print("edge-agent probe: --meter and --di are for DL/T 645 meters: add --dlt645", file=sys.stderr)
        return 2
    return run_modbus(args)


def run_modbus(args: argparse.Namespace) -> int:
    limit = 2000 if args.table in BIT_TABLES else 125
    if not 1 <= args.count <= limit or not 0 <= args.address <= 0xFFFF or args.address + args.count > 0x10000:
        print(f"edge-agent probe: --count must be 1..{limit} and the range within 0..65535", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    req = ReadRequest(args.table, args.address, args.count, ())
    baudrate, parity = line_settings(args)

    async def read() -> tuple[list[int] | list[bool], float]:
        bus = open_bus(args, baudrate, parity)
        try:
            t0 = time.perf_counter()
            words = await bus.read(args.unit, req)
            return words, time.perf_counter() - t0
        finally:
            await bus.close()

    line = describe_line(args, baudrate, parity)
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


# --- DL/T 645 ----------------------------------------------------------------------------


@dataclass
class DltItem:
    """One identifier read from the meter: its value bytes, or why there are none."""

    di: int
    data: bytes | None = None
    seconds: float = 0.0
    error: DriverError | None = None

    @property
    def status(self) -> str:
        return self.error.status if self.error is not None else "ok"


@dataclass
class DltProbe:
    """The meter's address (None when it could not be read), and each identifier's result."""

    address: str | None
    address_read: bool
    items: list[DltItem] = field(default_factory=list)
    address_error: DriverError | None = None
    address_seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.address_error is not None:
            return self.address_error.status
        return next((i.status for i in self.items if i.error is not None), "ok")


def run_dlt645(args: argparse.Namespace) -> int:
    if args.host or args.rtu_over_tcp:
        print("edge-agent probe: DL/T 645 meters are probed on a serial port: use --port", file=sys.stderr)
        return 2
    try:
        if args.meter is not None:
            dlt_codec.address_bytes(args.meter)
        dis = [dlt_codec.parse_di(d) for d in args.di or []]
    except ValueError as exc:
        print(f"edge-agent probe: {exc}", file=sys.stderr)
        return 2
    if args.meter is not None and not dis:
        print("edge-agent probe: nothing to read: give --di, e.g. --di 00-01-00-00 (forward active energy)",
              file=sys.stderr)
        return 2
    baudrate, parity = line_settings(args)
    line = describe_line(args, baudrate, parity)
    bus = DLT645Bus("probe", args.port, baudrate=baudrate, parity=parity, stopbits=args.stopbits,
                    timeout=args.timeout, retries=1)
    result = asyncio.run(probe_meter(bus, args.meter, dis))
    if args.json:
        print(json.dumps(dlt_json(result, line)))
    else:
        print(render_dlt(result, line))
    return 0 if result.status == "ok" else 1


async def probe_meter(bus: DLT645Bus, meter: str | None, dis: list[int]) -> DltProbe:
    """Read the address (without ``meter``), then each identifier; every failure is kept."""
    try:
        if meter is None:
            t0 = time.perf_counter()
            try:
                address = await bus.read_address()
            except termios.error as exc:
                return DltProbe(None, True, address_error=unconfigurable(bus, exc))
            except DriverError as exc:
                return DltProbe(None, True, address_error=exc, address_seconds=time.perf_counter() - t0)
            result = DltProbe(address, True, address_seconds=time.perf_counter() - t0)
        else:
            result = DltProbe(dlt_codec.address_text(dlt_codec.address_bytes(meter)), False)
        assert result.address is not None
        for di in dis:
            t0 = time.perf_counter()
            try:
                data = await bus.read(result.address, di)
            except termios.error as exc:
                result.items.append(DltItem(di, error=unconfigurable(bus, exc)))
                break
            except DriverError as exc:
                result.items.append(DltItem(di, error=exc, seconds=time.perf_counter() - t0))
                if isinstance(exc, BusUnavailable):
                    break  # the others would fail the same way
                continue
            result.items.append(DltItem(di, data=data, seconds=time.perf_counter() - t0))
        return result
    finally:
        await bus.close()


def unconfigurable(bus: DLT645Bus, exc: termios.error) -> BusUnavailable:
    """pyserial lets termios.error out when a port refuses the line settings (a pty may refuse parity)."""
    return BusUnavailable(f"cannot set {bus.where} to {bus.baudrate} 8{bus.parity}{bus.stopbits}: {exc}")


def dlt_hint(status: str, read_address: bool = False) -> str:
    """What to check after a failure; ``read_address`` when it answered the read-address request."""
    hint = DLT645_HINTS.get(status, "")
    if read_address and status == "timeout":
        return READ_ADDRESS_HINTS["timeout"]
    if read_address and status in ("crc_error", "garbage", "short_frame"):
        return f"{hint}; {READ_ADDRESS_HINTS['collision']}"
    return hint


def render_dlt(result: DltProbe, line: str) -> str:
    if result.address is None:
        exc = result.address_error
        assert exc is not None
        out = [f"meter ? @ {line}: read address (0x13 to {dlt_codec.WILDCARD_ADDRESS}): {exc.status}: {exc}"]
        hint = dlt_hint(exc.status, read_address=True)
        return "\n".join([*out, f"  {hint}"] if hint else out)
    head = f"meter {result.address} @ {line}"
    if result.address_read:
        head += f"  (address read from the line in {result.address_seconds * 1000:.0f} ms)"
    out = [head]
    hinted: set[str] = set()
    for item in result.items:
        out.append("")
        out += render_item(item, hinted)
    return "\n".join(out)


def render_item(item: DltItem, hinted: set[str]) -> list[str]:
    name = dlt_codec.di_text(item.di)
    table = dlt.known_item(item.di)
    if item.data is None:
        exc = item.error
        assert exc is not None
        about = f" ({table.description})" if table else ""
        out = [f"{name}{about}: {exc.status}: {exc}"]
        if exc.status not in hinted and dlt_hint(exc.status):
            hinted.add(exc.status)
            out.append(f"  {dlt_hint(exc.status)}")
        return out
    data = item.data
    raw = (f"  raw {dlt.raw_hex(data) or '(none)'}  ({len(data)} bytes, 0x33 removed, low byte first), "
           f"answered in {item.seconds * 1000:.0f} ms")
    value, problem = dlt.try_known(item.di, data)
    if value is not None:
        unit = f" {value.item.unit}" if value.item.unit else ""
        sign = ", signed" if value.item.signed else ""
        return [f"{name}  {value.item.description}: {value.text}{unit}  (format {value.item.format}{sign})", raw]
    if problem is not None and table is not None:
        out = [f"{name}  {table.description}: the bytes do not fit format {table.format}: {problem}", raw]
    else:
        out = [f"{name}  not in the table of common identifiers", raw]
    return out + render_candidates(data)


def render_candidates(data: bytes) -> list[str]:
    if not data:
        return ["  the reply carries no value bytes"]
    found = dlt.candidates(data)
    if not found:
        return [f"  digits {dlt.digits(data)}: not BCD, no plausible decoding"]
    unsigned = {c.format: c.text for c in found if not c.signed}
    signed = {c.format: c.text for c in found if c.signed}
    formats = list(dict.fromkeys(c.format for c in found))
    width = max(len(f) for f in formats)
    vwidth = max(len(c.text) for c in found)
    out = [f"  digits {dlt.digits(data)}; plausible BCD decodings:",
           f"    {'format':<{width}}  {'unsigned':>{max(vwidth, 8)}}  {'signed':>{max(vwidth, 8)}}"]
    for f in formats:
        out.append(f"    {f:<{width}}  {unsigned.get(f, '-'):>{max(vwidth, 8)}}  "
                   f"{signed.get(f, '-'):>{max(vwidth, 8)}}".rstrip())
    return out


def dlt_json(result: DltProbe, line: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"meter": result.address, "line": line, "address_read": result.address_read,
                           "status": result.status}
    if result.address_error is not None:
        doc["error"] = str(result.address_error)
        doc["hint"] = dlt_hint(result.address_error.status, read_address=True)
    doc["items"] = [item_json(i) for i in result.items]
    return doc


def item_json(item: DltItem) -> dict[str, Any]:
    doc: dict[str, Any] = {"di": dlt_codec.di_text(item.di), "status": item.status,
                           "ms": round(item.seconds * 1000, 1)}
    if item.data is None:
        assert item.error is not None
        doc["error"] = str(item.error)
        doc["hint"] = dlt_hint(item.status)
        return doc
    doc["raw"] = dlt.raw_hex(item.data)
    doc["bytes"] = len(item.data)
    value, problem = dlt.try_known(item.di, item.data)
    if value is not None:
        it = value.item
        doc.update(value=value.value, unit=it.unit, description=it.description, format=it.format,
                   signed=it.signed)
        return doc
    if problem is not None:
        doc["decode_error"] = str(problem)
    doc["digits"] = dlt.digits(item.data)
    doc["candidates"] = [{"format": c.format, "signed": c.signed, "value": c.value}
                         for c in dlt.candidates(item.data)]
    return doc
