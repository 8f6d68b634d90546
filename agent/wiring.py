"""From a validated config to live parts: buses, devices and their read functions.

Which protocol a bus speaks comes from its devices' profiles; the protocol registry
(``drivers/protocols.py``) opens the bus and builds each device, so nothing here knows
one protocol from another.
"""

from __future__ import annotations

from drivers import protocols
from drivers.protocols import Bus, Device

from .config import LoadedConfig, RtuOverTcpBus, SerialBus, TcpBus


def build_bus(name: str, bus: SerialBus | TcpBus | RtuOverTcpBus, protocol: str = protocols.DEFAULT) -> Bus:
    """The single owner of one physical bus, speaking the protocol of its devices."""
    return protocols.get(protocol).open_bus(name, dict(bus))  # field values as validated (seconds, not "500ms")


def bus_protocols(loaded: LoadedConfig) -> dict[str, str]:
    """The protocol each bus speaks, from its devices' profiles (config checks forbid mixing)."""
    out: dict[str, str] = {}
    for dev_id, dev in loaded.config.devices.items():
        if dev_id in loaded.profiles:
            out.setdefault(dev.bus, loaded.profiles[dev_id].protocol)
    return out


def build_devices(loaded: LoadedConfig, only: str | None = None) -> tuple[dict[str, Bus], dict[str, Device]]:
    """One bus object per configured bus (its single owner), one driver per enabled device."""
    cfg = loaded.config
    on_bus = bus_protocols(loaded)
    buses = {name: build_bus(name, b, on_bus.get(name, protocols.DEFAULT)) for name, b in cfg.buses.items()}
    devices: dict[str, Device] = {}
    for dev_id, dev in cfg.devices.items():
        if not dev.enabled or (only is not None and dev_id != only):
            continue
        profile = loaded.profiles[dev_id]
        protocol = protocols.of(profile)
        devices[dev_id] = protocol.build_device(buses[dev.bus], getattr(dev, protocol.address_key), profile)
    return buses, devices


def device_address(loaded: LoadedConfig, dev_id: str) -> tuple[str, object]:
    """(config key, value) that addresses a device on its bus: ("unit", 3), ("address", "0001...")."""
    key = protocols.of(loaded.profiles[dev_id]).address_key
    return key, getattr(loaded.config.devices[dev_id], key)


def device_metadata(loaded: LoadedConfig) -> dict[str, dict[str, object]]:
    """What a platform needs to read values without the catalog: profile, units, location."""
    out: dict[str, dict[str, object]] = {}
    for dev_id, dev in loaded.config.devices.items():
        if not dev.enabled:
            continue
        p = loaded.profiles[dev_id]
        meta: dict[str, object] = {"device": dev_id, "profile": p.name, "vendor": p.vendor,
                                   "model": p.model, "interval_s": dev.interval, "units": p.units()}
        location = dev.location or loaded.config.gateway.location
        if location:
            meta["location"] = location
        out[dev_id] = meta
    return out
