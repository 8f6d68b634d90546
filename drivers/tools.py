"""Technician tools a protocol may offer: ``edge-agent probe`` and ``edge-agent scan``.

The agent keeps the common command line (where the line is, its serial settings, ``--json``,
``--protocol``) and hands each tool a :class:`Line`; what is read and how it is shown is the
protocol's, named by ``tools`` in its ``ProtocolSpec`` ("module:attribute" of a
:class:`ProtocolTools`). A tool may print; a wrong option is a :class:`UsageError`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TCP_KINDS = ("tcp", "rtu-over-tcp")


class UsageError(ValueError):
    """Options that do not fit the protocol: said on stderr, exit status 2."""


@dataclass(frozen=True)
class Line:
    """One line to probe or scan: a serial port at one speed and parity, or a host.

    ``where`` is the serial device, or HOST[:PORT] as the technician gave it; ``kind`` is
    the bus type (``serial``, ``tcp``, ``rtu-over-tcp``) as in the config, ``label`` how
    messages name a network one (e.g. "Modbus TCP")."""

    kind: str
    where: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout: float = 0.5
    label: str = ""

    @property
    def host(self) -> str:
        return self.where.partition(":")[0]

    @property
    def tcp_port(self) -> int:
        return int(self.where.partition(":")[2] or 502)

    def settings(self, retries: int = 1) -> dict[str, Any]:
        """The line as a bus's config section, for the protocol's ``open_bus``."""
        common = {"type": self.kind, "timeout": self.timeout, "retries": retries, "inter_frame_delay": None}
        if self.kind == "serial":
            return {**common, "port": self.where, "baudrate": self.baudrate, "parity": self.parity,
                    "stopbits": self.stopbits, "bytesize": 8}
        return {**common, "host": self.host, "port": self.tcp_port}

    def describe(self) -> str:
        if self.kind == "serial":
            return f"{self.where} {self.baudrate} 8{self.parity}{self.stopbits}"
        return f"{self.where} ({self.label or self.kind})"


@dataclass(frozen=True)
class ProtocolTools:
    """What a protocol offers the technician.

    - ``noun``: what it probes, in messages ("DL/T 645 meters"); ``flag``: a shorthand for
      ``--protocol NAME`` (e.g. ``--dlt645``), kept so older command lines work.
    - ``serial``: the usual baud rate and parity, used when the options give none;
      ``line_labels``: how messages name its network bus types ({"tcp": "Modbus TCP"}).
    - ``add_probe_arguments(group)`` adds the options in ``probe_options`` (each with
      default None, so an option given for another protocol is told apart);
      ``probe(args, line)`` reads and prints, and returns the exit status.
    - ``probe_examples`` / ``probe_notes``: lines for ``probe --help``.
    - ``add_scan_arguments``, ``scan(args, lines)``, ``scan_examples``, ``scan_notes``: the
      same for ``edge-agent scan`` (lines: the settings to try, in order), if it scans.
    """

    noun: str
    serial: tuple[int, str]
    add_probe_arguments: Callable[[argparse._ArgumentGroup], None]
    probe: Callable[[argparse.Namespace, Line], int]
    probe_options: tuple[str, ...] = ()
    probe_examples: str = ""
    probe_notes: str = ""
    flag: str | None = None
    line_labels: dict[str, str] = field(default_factory=dict)
    add_scan_arguments: Callable[[argparse._ArgumentGroup], None] | None = None
    scan: Callable[[argparse.Namespace, list[Line]], int] | None = None
    scan_examples: str = ""
    scan_notes: str = ""


def option_dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def listed(options: tuple[str, ...]) -> str:
    """``--a``, ``--a and --b``, ``--a, --b and --c``."""
    return ", ".join(options[:-1]) + " and " + options[-1] if len(options) > 1 else "".join(options)
