"""Simulated DL/T 645 meters behind the protocol interface (``drivers/simulator/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..simulator.spec import SerialLine, SimulationSpec
from .codec import address_bytes
from .simulator import DLT645Simulator, SimMeter


def make(ident: str, profile: Any) -> SimMeter:
    return SimMeter(ident, profile)


def answers_to(meter: SimMeter, ident: str) -> bool:
    try:
        return address_bytes(ident) == address_bytes(meter.address)
    except ValueError:
        return False


@dataclass
class _Served:
    sim: DLT645Simulator

    async def stop(self) -> None:
        await self.sim.stop()


async def serve_pty(line: SerialLine, meters: list[SimMeter]) -> _Served:
    sim = DLT645Simulator(line.port, meters, baudrate=line.baudrate, parity=line.parity,
                          emulate_wire_time=line.emulate_timing)
    await sim.start()
    return _Served(sim)


SIMULATION = SimulationSpec(make=make, answers_to=answers_to, label=lambda m: m.address, serve_pty=serve_pty,
                            serve_tcp=None, pty_name="dlt645", serial=(2400, "E"), ident_name="meter address",
                            noun="meters")
