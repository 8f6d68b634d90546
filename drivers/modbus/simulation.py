"""Simulated Modbus slaves behind the protocol interface (``drivers/simulator/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..simulator.spec import SerialLine, SimulationSpec
from .points import as_modbus
from .simulator.server import SimContext, SimSlave, start_serial_server, start_tcp_server


def make(ident: str, profile: Any) -> SimSlave:
    if len(ident) > 3 or not 0 <= int(ident) <= 247:
        raise ValueError(f"{ident} is no Modbus unit ({profile.name} is a Modbus profile)")
    return SimSlave(unit=int(ident), profile=as_modbus(profile))


def answers_to(slave: SimSlave, ident: str) -> bool:
    return len(ident) <= 3 and slave.unit == int(ident)


@dataclass
class _Served:
    server: Any

    async def stop(self) -> None:
        await self.server.shutdown()


async def serve_pty(line: SerialLine, slaves: list[SimSlave]) -> _Served:
    ctx = SimContext(slaves, line.baudrate if line.emulate_timing else None)
    return _Served(await start_serial_server(line.port, ctx, baudrate=line.baudrate, parity=line.parity))


async def serve_tcp(host: str, port: int, slaves: list[SimSlave]) -> _Served:
    return _Served(await start_tcp_server(host, port, SimContext(slaves)))


SIMULATION = SimulationSpec(make=make, answers_to=answers_to, label=lambda s: str(s.unit), serve_pty=serve_pty,
                            serve_tcp=serve_tcp, pty_name="rs485", serial=(9600, "N"))
