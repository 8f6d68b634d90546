"""``edge-agent probe`` for DL/T 645-2007 meters: read data identifiers and decode them.

The value bytes as on the wire (0x33 removed, low byte first), the value decoded with its
unit when the identifier is in the standard's table, else every plausible BCD decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import termios
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BusUnavailable, DriverError
from ..tools import Line, ProtocolTools, UsageError
from . import codec as dlt_codec
from . import decodings as dlt
from .bus import DLT645Bus
from .protocol import open_bus

EXAMPLES = """\
  edge-agent probe --port /dev/ttyUSB0 --dlt645 --di 00-01-00-00 --di 02-01-01-00
  edge-agent probe --port /dev/ttyUSB0 --dlt645 --meter 123456789012 --di 04-00-04-01 --json"""
NOTES = """\
DL/T 645 meters (--dlt645, or --protocol dlt645): 2400 8E1 unless --baudrate/--parity say
otherwise. Without --meter the address is read first (0x13 to AAAAAAAAAAAA) and printed;
that works only with one meter on the line. Each --di (DI3-DI2-DI1-DI0, as the standard's
tables print it) shows the value bytes, then the value with its unit when the identifier is
a common one, else every plausible BCD decoding (0 to 4 decimals, signed variants): the
format that fits is what the profile's point declares. A meter that fails any identifier
makes the exit status 1."""

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


def add_probe_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--meter", metavar="ADDRESS",
                   help="meter address, up to 12 digits as printed on the meter "
                        "(default: read it, with one meter on the line)")
    g.add_argument("--di", action="append", metavar="DI",
                   help="data identifier to read, e.g. 02-01-01-00 (repeat for more)")


def probe(args: argparse.Namespace, line: Line) -> int:
    try:
        if args.meter is not None:
            dlt_codec.address_bytes(args.meter)
        dis = [dlt_codec.parse_di(d) for d in args.di or []]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.meter is not None and not dis:
        raise UsageError("nothing to read: give --di, e.g. --di 00-01-00-00 (forward active energy)")
    bus = open_bus("probe", line.settings(retries=1))
    result = asyncio.run(probe_meter(bus, args.meter, dis))
    if args.json:
        print(json.dumps(dlt_json(result, line.describe())))
    else:
        print(render_dlt(result, line.describe()))
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


TOOLS = ProtocolTools(
    noun="DL/T 645 meters", serial=(2400, "E"), flag="--dlt645",
    add_probe_arguments=add_probe_arguments, probe=probe, probe_options=("--meter", "--di"),
    probe_examples=EXAMPLES, probe_notes=NOTES,
)
