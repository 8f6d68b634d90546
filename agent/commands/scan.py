"""``edge-agent scan``: which devices answer on a line, and which catalog profiles fit them.

The line and the speeds and parities to try are common; how a line is swept is the
protocol's tools (``drivers/tools.py``), for the protocols that offer a scan.
"""

from __future__ import annotations

import argparse
import sys

from drivers import protocols
from drivers.tools import ProtocolTools, UsageError

from .probe import add_line_arguments, add_protocol_argument, epilog, line_of

EPILOG_TAIL = """\
Speeds and parities are tried in the order given and the scan stops at the first setting
where something answers (--all-settings goes on). Progress goes to stderr. Exit status 0
when a device answered, 1 when none did."""


def scanners() -> dict[str, ProtocolTools]:
    return {name: t for name, t in protocols.with_tools().items() if t.scan is not None}


def register(sub: argparse._SubParsersAction) -> None:
    offered = scanners()
    parts = [t.scan_examples for t in offered.values()] + [t.scan_notes for t in offered.values()]
    p = sub.add_parser("scan", help="find the unit ids that answer on a bus and the profiles that fit them",
                       epilog=epilog(parts, EPILOG_TAIL), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_line_arguments(p, many=True)
    p.set_defaults(timeout=0.5)
    add_protocol_argument(p, list(offered))
    p.add_argument("--all-settings", action="store_true", help="try every speed and parity given")
    for tools in offered.values():
        if tools.add_scan_arguments is not None:
            tools.add_scan_arguments(p.add_argument_group(tools.noun))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tools = scanners()[args.protocol]
    assert tools.scan is not None
    try:
        bauds = [int(b) for b in str(args.baudrate).split(",")] if args.port else [0]
        parities = [p.strip().upper() for p in str(args.parity).split(",")] if args.port else ["N"]
        if any(p not in ("N", "E", "O") for p in parities):
            raise UsageError("parities are N, E or O")
    except ValueError as exc:
        return usage(exc)
    lines = [line_of(args, tools, baud, parity) for baud in bauds for parity in parities]
    try:
        return tools.scan(args, lines)
    except UsageError as exc:
        return usage(exc)


def usage(problem: Exception) -> int:
    print(f"edge-agent scan: {problem}", file=sys.stderr)
    return 2
