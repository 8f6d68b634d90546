"""From a validated config to live parts: buses, devices and their read functions."""

from __future__ import annotations

from drivers.dlt645.bus import DLT645Bus, DLT645Device
from drivers.modbus.bus import ModbusBus
from drivers.modbus.device import ModbusDevice

from .config import LoadedConfig, RtuOverTcpBus, SerialBus, TcpBus

Bus = ModbusBus | DLT645Bus
Device = ModbusDevice | DLT645Device


def build_bus(name: str, bus: SerialBus | TcpBus | RtuOverTcpBus, protocol: str = "modbus") -> Bus:
    """The single owner of one physical bus, speaking the protocol of its devices."""
    if protocol == "dlt645":
        assert isinstance(bus, SerialBus)
        return DLT645Bus(name, bus.port, baudrate=bus.baudrate, parity=bus.parity, stopbits=bus.stopbits,
                         bytesize=bus.bytesize, timeout=bus.timeout, retries=bus.retries,
                         inter_frame_delay=bus.inter_frame_delay)
    if isinstance(bus, SerialBus):
        return ModbusBus(name, "serial", port=bus.port, baudrate=bus.baudrate, parity=bus.parity,
                         stopbits=bus.stopbits, bytesize=bus.bytesize, timeout=bus.timeout,
                         retries=bus.retries, inter_frame_delay=bus.inter_frame_delay)
    return ModbusBus(name, bus.type, host=bus.host, tcp_port=bus.port, timeout=bus.timeout,
                     retries=bus.retries, inter_frame_delay=bus.inter_frame_delay)


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
    protocols = bus_protocols(loaded)
    buses = {name: build_bus(name, b, protocols.get(name, "modbus")) for name, b in cfg.buses.items()}
    devices: dict[str, Device] = {}
    for dev_id, dev in cfg.devices.items():
        if not dev.enabled or (only is not None and dev_id != only):
            continue
        profile = loaded.profiles[dev_id]
        bus = buses[dev.bus]
        if isinstance(bus, DLT645Bus):
            assert dev.address is not None
            devices[dev_id] = DLT645Device(bus, dev.address, profile)
        else:
            assert dev.unit is not None
            devices[dev_id] = ModbusDevice(bus, dev.unit, profile)
    return buses, devices


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
