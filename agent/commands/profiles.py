"""``edge-agent profiles list|show``: the device catalog, as a technician reads it."""

from __future__ import annotations

import argparse
import sys
import textwrap
import unicodedata

from drivers import protocols
from drivers.catalog import catalog, looks_like_path, resolve_profile
from drivers.profile import Profile
from drivers.yamlsource import SourceError

EPILOG_LIST = """examples:
  edge-agent profiles list
  edge-agent profiles list --category energy
Every profile shipped with the agent: name (what a config's 'profile:' takes), protocol,
category, vendor and model, number of points, and the serial settings the device ships with."""

EPILOG_SHOW = """examples:
  edge-agent profiles show renke-dust-all-in-one
  edge-agent profiles show ./profiles/my-level-gauge.yaml
Shows each point (table, address in decimal and hex, type, scale, unit) and the read plan:
the requests one poll makes, with their time on the wire at the device's serial speed."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list the device catalog, or show one profile's points and read plan")
    cmds = p.add_subparsers(dest="profiles_command", required=True, metavar="list|show")
    fmt = argparse.RawDescriptionHelpFormatter
    q = cmds.add_parser("list", help="the catalog as a table", epilog=EPILOG_LIST, formatter_class=fmt)
    q.add_argument("--category", choices=["dust", "weather", "water", "energy", "lighting", "other"])
    q.set_defaults(func=run_list)
    q = cmds.add_parser("show", help="one profile's points and read plan", epilog=EPILOG_SHOW, formatter_class=fmt)
    q.add_argument("name", metavar="NAME|PATH", help="catalog name or path to a profile YAML")
    q.set_defaults(func=run_show)


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c + " " * (w - width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def serial_text(p: Profile) -> str:
    s = p.serial
    return f"{s.baudrate} {s.bytesize}{s.parity}{s.stopbits}" if s else "-"


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for name in sorted(catalog()):
        p = resolve_profile(name)
        if args.category and p.category != args.category:
            continue
        rows.append([name, p.protocol, p.category, f"{p.vendor} / {p.model}", str(len(p.points)), serial_text(p)])
    print(table(rows, ["NAME", "PROTOCOL", "CATEGORY", "VENDOR / MODEL", "POINTS", "SERIAL"]))
    print(f"\n{len(rows)} profiles; 'edge-agent profiles show NAME' for the points")
    return 0


def run_show(args: argparse.Namespace) -> int:
    try:
        p = resolve_profile(args.name)
    except LookupError as exc:
        print(f"edge-agent profiles: {exc.args[0]}", file=sys.stderr)
        return 2
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    where = args.name if looks_like_path(args.name) else str(catalog()[p.name])
    print(f"{p.name}: {p.vendor} {p.model}  ({p.protocol}, {p.category})")
    if p.description:
        print(textwrap.fill(" ".join(p.description.split()), 100, initial_indent="  ", subsequent_indent="  "))
    print(f"  file: {where}")
    print(f"  serial: {serial_text(p)}")
    for section in protocols.of(p).describe(p):
        print()
        print(section if isinstance(section, str) else table(section[1], section[0]))
    return 0
