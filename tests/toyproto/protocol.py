"""A third protocol, kept in the tests, that reaches the agent through the registry alone.

"Toy line protocol" over TCP: the gateway sends ``<unit> GET <key>\\n``; the device
answers ``<unit> <key> <value>\\n``, or ``<unit> ERR <why>\\n`` for a key it does not
know. Nothing in ``agent/`` knows of it: ``protocols.register(TOY)`` is all it takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from drivers.errors import BusUnavailable, DriverError, ExceptionResponse, NoResponse
from drivers.profile import PointBase, ProfileBase
from drivers.protocols import ProtocolSpec, Section
from drivers.reading import Polled


class ToyPoint(PointBase):
    foreign_keys: ClassVar[dict[str, str]] = {"address": "belongs to Modbus points, not to a toy point"}
    key: str


class ToyProfile(ProfileBase):
    protocol: Literal["toy"] = "toy"
    points: dict[str, ToyPoint]


class ToyBus:
    """One TCP connection to a toy device server, one request at a time."""

    def __init__(self, name: str, host: str, port: int, timeout: float) -> None:
        self.name, self.host, self.port, self.timeout = name, host, port, timeout
        self.lock = asyncio.Lock()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def ask(self, line: str) -> str:
        async with self.lock:
            try:
                if self.streams is None:
                    self.streams = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
                reader, writer = self.streams
                writer.write(line.encode() + b"\n")
                answer = await asyncio.wait_for(reader.readline(), self.timeout)
            except TimeoutError:
                await self.close()
                raise NoResponse(f"{self.name}: no answer to {line!r}") from None
            except OSError as exc:
                await self.close()
                raise BusUnavailable(f"{self.name}: {exc}") from None
            if not answer:
                await self.close()
                raise NoResponse(f"{self.name}: connection closed")
            return answer.decode().strip()

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class ToyDevice:
    def __init__(self, bus: ToyBus, unit: int, profile: ToyProfile) -> None:
        self.bus, self.unit, self.profile = bus, unit, profile
        self.plan = [(name, p.key) for name, p in profile.points.items()]

    async def read(self) -> Polled:
        polled = Polled()
        for name, key in self.plan:
            try:
                parts = (await self.bus.ask(f"{self.unit} GET {key}")).split()
                if parts[1] == "ERR":
                    raise ExceptionResponse(2)
                if parts[:2] != [str(self.unit), key]:
                    raise DriverError(f"answer for {parts[:2]}, asked for {key}")
                value = float(parts[2]) * self.profile.points[name].scale
            except NoResponse:
                if not polled.values and not polled.errors:
                    raise
                polled.errors[name] = "timeout"
                continue
            except DriverError as exc:
                polled.errors[name] = exc.status
                continue
            polled.keep(name, value, self.profile.points[name].range)
        if not polled.values:
            raise DriverError("no point could be read")
        return polled


def open_bus(name: str, s: Mapping[str, Any]) -> ToyBus:
    return ToyBus(name, s["host"], s["port"], s["timeout"])


def describe(p: ToyProfile) -> list[Section]:
    return [(["POINT", "KEY", "UNIT"], [[n, pt.key, p.unit_of(n)] for n, pt in p.points.items()])]


TOY = ProtocolSpec(
    name="toy", title="Toy line protocol", profile_model=ToyProfile, address_key="unit",
    bus_types=frozenset({"tcp"}), check_address=lambda unit: None if 1 <= unit <= 99 else "toy units are 1 to 99",
    open_bus=open_bus, build_device=ToyDevice, describe=describe, summary=lambda p: "toy",
)
