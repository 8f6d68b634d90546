"""``edge-agent probe``: read one device raw and show every plausible decoding of what it sent.

For the technician with a device whose map is unknown or doubtful. This module keeps what
every protocol shares: where the line is (``--port``/``--host``), its serial settings,
``--json``, ``--protocol`` (from the registry) and the error handling; what is read and how
it is shown are the protocol's tools (``drivers/tools.py``), e.g. raw registers for Modbus,
data identifiers for a DL/T 645 meter. The line options here are shared with ``edge-agent scan``.
"""

from __future__ import annotations

import argparse
import sys

from drivers import protocols
from drivers.tools import TCP_KINDS, Line, ProtocolTools, UsageError, listed, option_dest

from ..argtypes import host_port

EPILOG_TAIL = """\
Stop the daemon first if it owns the same serial port. Exit status 0 when the device
answered, 1 when it did not (the reason and what to check are printed), 2 when the
options do not fit."""


def add_line_arguments(p: argparse.ArgumentParser, many: bool = False) -> None:
    """--port/--host and the serial settings; with ``many`` the serial settings take lists."""
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEVICE", help="serial port, e.g. /dev/ttyUSB0")
    where.add_argument("--host", metavar="HOST[:PORT]", type=host_port,
                       help="Modbus TCP device or serial-to-Ethernet converter")
    p.add_argument("--rtu-over-tcp", action="store_true",
                   help="with --host: RTU frames over TCP (a transparent converter), not Modbus TCP")
    if many:
        p.add_argument("--baudrate", default="9600", metavar="B[,B...]",
                       help="serial speeds to try, e.g. 9600,4800,2400 (default 9600)")
        p.add_argument("--parity", default="N", metavar="P[,P...]", help="parities to try: N, E, O (default N)")
    else:  # defaults depend on the protocol (see line_of)
        p.add_argument("--baudrate", type=int, help="serial speed (default: the protocol's, below)")
        p.add_argument("--parity", choices=["N", "E", "O"], help="parity (default: the protocol's, below)")
    p.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    p.add_argument("--timeout", type=float, default=0.5, metavar="SECONDS", help="per request (default 0.5)")


def add_protocol_argument(p: argparse.ArgumentParser, choices: list[str]) -> None:
    p.add_argument("--protocol", choices=choices, default=protocols.DEFAULT,
                   help=f"what the device speaks (default {protocols.DEFAULT})")


def line_of(args: argparse.Namespace, tools: ProtocolTools, baudrate: int, parity: str) -> Line:
    """The line the options name, at this speed and parity when it is serial."""
    if args.port:
        return Line("serial", args.port, baudrate, parity, args.stopbits, args.timeout)
    kind = "rtu-over-tcp" if args.rtu_over_tcp else "tcp"
    return Line(kind, args.host, timeout=args.timeout, label=tools.line_labels.get(kind, kind))


def epilog(parts: list[str], tail: str) -> str:
    return "\n".join(["examples:", *[p for p in parts if p], tail])


def register(sub: argparse._SubParsersAction) -> None:
    offered = protocols.with_tools()
    parts = [t.probe_examples for t in offered.values()] + [t.probe_notes for t in offered.values()]
    p = sub.add_parser("probe", help="read raw registers from a device and show every plausible decoding",
                       epilog=epilog(parts, EPILOG_TAIL), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_line_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_protocol_argument(p, list(offered))
    for name, tools in offered.items():
        g = p.add_argument_group(tools.noun, f"--protocol {name}: {tools.serial[0]} 8{tools.serial[1]}1 "
                                             "unless --baudrate/--parity say otherwise")
        if tools.flag:
            g.add_argument(tools.flag, dest="protocol", action="store_const", const=name,
                           help=f"same as --protocol {name}")
        tools.add_probe_arguments(g)
    p.set_defaults(func=run)


def chosen(args: argparse.Namespace) -> ProtocolTools:
    """The protocol's tools; UsageError when an option belongs to another protocol or the line does not fit."""
    offered = protocols.with_tools()
    tools = offered[args.protocol]
    for name, other in offered.items():
        if name != args.protocol and any(getattr(args, option_dest(o), None) is not None
                                         for o in other.probe_options):
            how = other.flag or f"--protocol {name}"
            raise UsageError(f"{listed(other.probe_options)} are for {other.noun}: add {how}")
    bus_types = protocols.get(args.protocol).bus_types
    if (args.host or args.rtu_over_tcp) and not bus_types & set(TCP_KINDS):
        raise UsageError(f"{tools.noun} are probed on a serial port: use --port")
    if args.port and "serial" not in bus_types:
        raise UsageError(f"{tools.noun} are probed over the network: use --host")
    return tools


def run(args: argparse.Namespace) -> int:
    try:
        tools = chosen(args)
        line = line_of(args, tools, args.baudrate or tools.serial[0], args.parity or tools.serial[1])
        return tools.probe(args, line)
    except UsageError as exc:
        print(f"edge-agent probe: {exc}", file=sys.stderr)
        return 2
