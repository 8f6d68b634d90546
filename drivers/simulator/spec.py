"""How a protocol serves simulated devices, so ``edge-agent simulate`` needs no protocol names.

A protocol's ``simulation`` (in its ``ProtocolSpec``) makes a simulated device from a
profile and the text that addresses it on its line (a Modbus unit, a meter address),
changes its faults, and serves a list of them on one end of a pty pair or on TCP.

Fault names are common to all protocols: ``dead``, ``exception`` (the protocol's error
answer), ``slow``, ``bad_crc`` (a broken checksum), ``garbage`` and ``short``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol as Interface

FAULT_NAMES = ("dead", "exception", "slow", "bad_crc", "garbage", "short")


class SimDevice(Interface):
    @property
    def profile(self) -> Any: ...

    @property
    def fault(self) -> str: ...

    def set_fault(self, fault: str, rate: float = 1.0) -> None: ...


class ServedLine(Interface):
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class SerialLine:
    """Where and how a simulated line is served: the device end of a pty pair, at this speed."""

    port: str
    baudrate: int
    parity: str
    emulate_timing: bool


@dataclass(frozen=True)
class SimulationSpec:
    """- ``make(ident, profile)``: a simulated device; ValueError says why ``ident`` cannot be.
    - ``answers_to(device, ident)``: whether the device is the one ``ident`` names.
    - ``label(device)``: how listings name it (its unit, its address).
    - ``serve_pty(line, devices)`` / ``serve_tcp(host, port, devices)`` (None: no TCP).
    - ``pty_name``: the pty pair's link name when it has a line of its own; ``serial``: the
      line's default speed and parity; ``ident_name`` and ``noun`` how messages name them."""

    make: Callable[[str, Any], Any]  # → SimDevice
    answers_to: Callable[[Any, str], bool]
    label: Callable[[Any], str]
    serve_pty: Callable[[SerialLine, list[Any]], Awaitable[ServedLine]]
    serve_tcp: Callable[[str, int, list[Any]], Awaitable[ServedLine]] | None
    pty_name: str
    serial: tuple[int, str]
    ident_name: str = "unit"
    noun: str = "units"  # the devices as listings name them: "units 1=..., 2=...", "meters 0001=..."
