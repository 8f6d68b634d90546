"""The toy protocol's technician tool, offered through its ProtocolSpec (``tools``) alone:
``edge-agent probe --protocol toy --host HOST:PORT --station 3 --key t`` asks one station for keys."""

from __future__ import annotations

import argparse
import asyncio

from drivers.errors import DriverError
from drivers.tools import Line, ProtocolTools, UsageError
from tests.toyproto.protocol import open_bus


def add_probe_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--station", type=int, help="toy station (default 1)")
    g.add_argument("--key", action="append", help="key to ask for (repeat for more)")


def probe(args: argparse.Namespace, line: Line) -> int:
    if not args.key:
        raise UsageError("nothing to ask: give --key")
    station = args.station or 1

    async def ask() -> list[str]:
        bus = open_bus("probe", line.settings())
        try:
            return [await bus.ask(f"{station} GET {key}") for key in args.key]
        finally:
            await bus.close()

    try:
        answers = asyncio.run(ask())
    except DriverError as exc:
        print(f"station {station} @ {line.describe()}: {exc.status}: {exc}")
        return 1
    for key, answer in zip(args.key, answers, strict=True):
        print(f"station {station} @ {line.describe()}: {key}: {answer.split()[-1]}")
    return 1 if any(" ERR" in a for a in answers) else 0


TOOLS = ProtocolTools(
    noun="toy devices", serial=(9600, "N"), flag="--toy", line_labels={"tcp": "toy line"},
    add_probe_arguments=add_probe_arguments, probe=probe, probe_options=("--station", "--key"),
    probe_examples="  edge-agent probe --toy --host 192.0.2.7:7000 --station 3 --key t",
)
