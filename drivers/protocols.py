"""The protocol registry: each protocol is one folder behind one small interface.

A protocol supplies its profile model (and so its point model), the bus types it runs on,
how a config addresses a device on its bus, how to open a bus and build a device, how to
plan a write, list a profile for a technician, serve simulated devices and offer
technician tools (``probe``, ``scan``). ``agent/`` looks
protocols up here by the profile's ``protocol:`` and never names one. Adding a protocol is
one folder with a ``protocol.py`` and one line in :data:`PROTOCOLS` (or :func:`register`
from elsewhere, e.g. a test's own protocol).

Protocols are imported when first asked for (the command line asks every protocol that
offers technician tools, to build `probe` and `scan`); simulation and tools are imported
only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol as Interface

from .errors import WriteRefused
from .profile import ProfileBase
from .reading import Polled, Value
from .tools import ProtocolTools
from .yamlsource import did_you_mean

DEFAULT = "modbus"  # a profile without 'protocol:' is a Modbus profile
# name → "module:attribute" of its ProtocolSpec
PROTOCOLS: dict[str, str] = {
    "modbus": "drivers.modbus.protocol:MODBUS",
    "dlt645": "drivers.dlt645.protocol:DLT645",
}
_loaded: dict[str, ProtocolSpec] = {}


class Bus(Interface):
    """The single owner of one physical line or socket."""

    name: str

    async def close(self) -> None: ...


class Device(Interface):
    """One device on a bus: read (and, where the protocol writes, write) its points."""

    @property
    def plan(self) -> Sequence[object]: ...  # the requests one poll sends (shown by `once`)

    async def read(self) -> Polled: ...

    async def write(self, values: Mapping[str, Value]) -> dict[str, Value]:
        """Write point values and return them as read back; a protocol that does not write
        raises WriteRefused without touching its bus, a failing bus a DriverError."""
        ...


class PlannedWrite(Interface):
    """A checked, encoded write a device can execute and ``--dry-run`` can print."""

    @property
    def point(self) -> str: ...

    @property
    def value(self) -> Value: ...

    def describe(self, unit: int | None = None) -> str: ...


# what ``profiles show`` prints for a profile: lines of text and tables (header, rows)
Section = str | tuple[list[str], list[list[str]]]


@dataclass(frozen=True)
class ProtocolSpec:
    """Everything the agent needs to know of one protocol.

    - ``address_key``: the device's config key that addresses it on its bus (``unit`` or
      ``address``); ``check_address(value)`` returns a problem or None.
    - ``bus_types``: the config bus types (``serial``, ``tcp``, ``rtu-over-tcp``) it runs on.
    - ``open_bus(name, settings)``: settings are the bus's config as a mapping.
    - ``build_device(bus, address, profile)``.
    - ``profile_problems(profile)``: (point, key, message) beyond the model's own checks.
    - ``describe(profile)``: what ``profiles show`` prints under the header; ``summary(profile)``
      the protocol column of the supported-devices list.
    - ``plan_write(profile, point, value)``: check and encode a write (None: never writes).
    - ``simulation`` and ``tools``: where its simulated devices and its technician tools
      (``edge-agent probe`` / ``scan``) are, imported only when asked for.
    """

    name: str
    title: str
    profile_model: type[ProfileBase]
    address_key: str
    bus_types: frozenset[str]
    check_address: Callable[[Any], str | None]
    open_bus: Callable[[str, Mapping[str, Any]], Bus]
    build_device: Callable[[Any, Any, Any], Any]  # → Device
    describe: Callable[[Any], list[Section]]
    summary: Callable[[Any], str]
    profile_problems: Callable[[Any], list[tuple[str, str, str]]] | None = None
    simulation: str | None = None  # "module:attribute" of its SimulationSpec, imported when asked for
    plan_write: Callable[[Any, str, object], Any] | None = None  # → PlannedWrite
    tools: str | None = None  # "module:attribute" of its ProtocolTools (drivers/tools.py), if any

    @property
    def writes(self) -> bool:
        return self.plan_write is not None


class UnknownProtocol(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown protocol '{name}'{did_you_mean(name, names())} "
                         f"(protocols: {', '.join(names())})")
        self.name = name


def names() -> list[str]:
    return sorted(set(PROTOCOLS) | set(_loaded))


def get(name: str) -> ProtocolSpec:
    """The protocol called ``name``; raises :class:`UnknownProtocol`."""
    spec = _loaded.get(name)
    if spec is not None:
        return spec
    where = PROTOCOLS.get(name)
    if where is None:
        raise UnknownProtocol(name)
    module, _, attr = where.partition(":")
    spec = getattr(importlib.import_module(module), attr)
    _loaded[name] = spec
    return spec


def register(spec: ProtocolSpec) -> None:
    """Add a protocol (or replace one of that name) at run time."""
    _loaded[spec.name] = spec
    PROTOCOLS.setdefault(spec.name, "")


def of(profile: ProfileBase) -> ProtocolSpec:
    return get(profile.protocol)


def simulation(spec: ProtocolSpec) -> Any:
    """The protocol's ``SimulationSpec`` (drivers/simulator/spec.py), or None."""
    if spec.simulation is None:
        return None
    module, _, attr = spec.simulation.partition(":")
    return getattr(importlib.import_module(module), attr)


def tools(spec: ProtocolSpec) -> ProtocolTools | None:
    """The protocol's technician tools (``probe``, maybe ``scan``), or None."""
    if spec.tools is None:
        return None
    module, _, attr = spec.tools.partition(":")
    found: ProtocolTools = getattr(importlib.import_module(module), attr)
    return found


def with_tools() -> dict[str, ProtocolTools]:
    """Every protocol that offers technician tools, by name, the default protocol first."""
    found = {name: tools(get(name)) for name in sorted(names(), key=lambda n: (n != DEFAULT, n))}
    return {name: t for name, t in found.items() if t is not None}


def plan_write(profile: ProfileBase, point: str, value: object) -> PlannedWrite:
    """Check and encode one write through the profile's protocol; raises WriteRefused."""
    spec = of(profile)
    if spec.plan_write is None:
        raise WriteRefused(f"profile {profile.name} is {spec.title}: its points cannot be written")
    return spec.plan_write(profile, point, value)
