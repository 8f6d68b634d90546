"""Checks across a config's parts, after each part has passed its model: devices against
their profiles and protocols, buses, addresses, uplinks' files and HJ 212 devices.

Each problem or warning is a :class:`Problem` naming FILE:LINE and the dotted key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from drivers import protocols
from drivers.catalog import resolve_profile
from drivers.profile import Profile
from drivers.yamlsource import Problem, Source, SourceError, did_you_mean

from .config import Config, Device, Hj212Uplink, MqttUplink, SerialBus, Tls, is_loopback


def cross_check(cfg: Config, source: Source, base: Path) -> tuple[dict[str, Profile], list[Problem], list[Problem]]:
    """(profiles by device, problems, warnings) of a config whose parts are each valid."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    profiles: dict[str, Profile] = {}
    bus_protocol: dict[str, tuple[str, str]] = {}
    for dev_id, dev in cfg.devices.items():
        if dev.bus not in cfg.buses:
            problems.append(Problem(source.file, source.line_of(("devices", dev_id, "bus")), f"devices.{dev_id}.bus",
                                    f"unknown bus '{dev.bus}'{did_you_mean(dev.bus, cfg.buses)}"))
        profile = _device_profile(source, base, dev_id, dev, problems)
        if profile is None:
            continue
        profiles[dev_id] = profile
        _check_device(cfg, source, dev_id, dev, profile, bus_protocol, problems, warnings)
    _check_ports(cfg, source, warnings)
    _check_addresses(cfg, source, problems)
    for up_id, up in cfg.uplinks.items():
        if isinstance(up, Hj212Uplink):
            check_hj212(cfg, source, up_id, up, profiles, problems, warnings)
        else:
            _check_mqtt_files(source, base, up_id, up, problems, warnings)
    return profiles, problems, warnings


def _device_profile(source: Source, base: Path, dev_id: str, dev: Device, problems: list[Problem]) -> Profile | None:
    f, path = source.file, ("devices", dev_id)
    try:
        return resolve_profile(dev.profile, base)
    except LookupError as exc:
        problems.append(Problem(f, source.line_of((*path, "profile")), f"devices.{dev_id}.profile",
                                str(exc.args[0])))
    except SourceError as exc:
        problems.append(Problem(f, source.line_of((*path, "profile")), f"devices.{dev_id}.profile",
                                f"profile '{dev.profile}' is invalid:"))
        problems.extend(exc.problems)
    return None


def _check_device(cfg: Config, source: Source, dev_id: str, dev: Device, profile: Profile,
                  bus_protocol: dict[str, tuple[str, str]], problems: list[Problem], warnings: list[Problem]) -> None:
    """The device's address and bus suit its profile's protocol; one protocol per bus."""
    f, path = source.file, ("devices", dev_id)
    bus = cfg.buses.get(dev.bus)
    protocol = protocols.of(profile)
    key = protocol.address_key
    if getattr(dev, key) is None:
        problems.append(Problem(f, source.line_of(path), f"devices.{dev_id}.{key}",
                                f"profile {profile.name} is {protocol.title}: '{key}' is required"))
    else:
        trouble = protocol.check_address(getattr(dev, key))
        if trouble:
            problems.append(Problem(f, source.line_of((*path, key)), f"devices.{dev_id}.{key}", trouble))
    if bus is None:
        return
    if bus.type not in protocol.bus_types:
        problems.append(Problem(f, source.line_of((*path, "bus")), f"devices.{dev_id}.bus",
                                f"{protocol.title} devices need a bus of type "
                                f"{' or '.join(sorted(protocol.bus_types))}, not {bus.type}"))
    other = bus_protocol.setdefault(dev.bus, (profile.protocol, dev_id))
    if other[0] != profile.protocol:
        problems.append(Problem(f, source.line_of((*path, "profile")), f"devices.{dev_id}.profile",
                                f"a {profile.protocol} device cannot share bus {dev.bus} with the "
                                f"{other[0]} device {other[1]}: one protocol per port"))
    if isinstance(bus, SerialBus) and profile.serial:
        s = profile.serial
        if (s.baudrate, s.parity) != (bus.baudrate, bus.parity):
            warnings.append(Problem(f, source.line_of((*path, "bus")), f"devices.{dev_id}.bus",
                                    f"profile {profile.name} defaults to {s.baudrate} baud {s.parity}, "
                                    f"bus {dev.bus} runs at {bus.baudrate} baud {bus.parity}"))


def _check_ports(cfg: Config, source: Source, warnings: list[Problem]) -> None:
    """A serial port that is not there (yet) is a warning: the agent retries it."""
    for bus_id, bus_cfg in cfg.buses.items():
        if isinstance(bus_cfg, SerialBus) and not Path(bus_cfg.port).exists():
            try:
                os.stat(bus_cfg.port)
            except OSError as exc:
                warnings.append(Problem(source.file, source.line_of(("buses", bus_id, "port")),
                                        f"buses.{bus_id}.port",
                                        f"{bus_cfg.port}: {exc.strerror or exc} (the agent retries it while"
                                        " running; is the adapter plugged in?)"))


def _check_addresses(cfg: Config, source: Source, problems: list[Problem]) -> None:
    """One device per address on a bus."""
    seen: dict[tuple[str, str], str] = {}
    for dev_id, dev in cfg.devices.items():
        key, value = ("unit", str(dev.unit)) if dev.unit is not None else ("address", str(dev.address))
        slot = (dev.bus, f"{key}:{value}")
        if slot in seen:
            problems.append(Problem(source.file, source.line_of(("devices", dev_id, key)), f"devices.{dev_id}.{key}",
                                    f"{key} {value} on bus {dev.bus} is already device {seen[slot]}"))
        seen[slot] = dev_id


def _check_mqtt_files(source: Source, base: Path, up_id: str, up: MqttUplink, problems: list[Problem],
                      warnings: list[Problem]) -> None:
    """Password and TLS files exist (a readable password file warns); TLS off off-host warns."""
    f, path = source.file, ("uplinks", up_id)
    files: list[tuple[str, str | None]] = [("password_file", up.password_file)]
    if isinstance(up.tls, Tls):
        files += [("tls.ca", up.tls.ca), ("tls.cert", up.tls.cert), ("tls.key", up.tls.key)]
    for key, name in files:
        if name:
            problem, warning = file_check(base / name, name, key == "password_file")
            where = (f, source.line_of((*path, *key.split("."))), f"uplinks.{up_id}.{key}")
            if problem:
                problems.append(Problem(*where, problem))
            if warning:
                warnings.append(Problem(*where, warning))
    if up.tls is False and not is_loopback(up.host):
        warnings.append(Problem(f, source.line_of((*path, "tls")), f"uplinks.{up_id}.tls",
                                "TLS is off for a host that is not loopback: credentials and data travel in clear"))


def check_hj212(cfg: Config, source: Source, up_id: str, up: Hj212Uplink, profiles: dict[str, Profile],
                 problems: list[Problem], warnings: list[Problem]) -> None:
    """Its devices exist and carry factor points; intervals outside the standard's ranges warn."""
    f, path = source.file, ("uplinks", up_id)
    codes = up.codes()
    for dev_id in up.devices or []:
        if dev_id not in cfg.devices:
            problems.append(Problem(f, source.line_of((*path, "devices")), f"uplinks.{up_id}.devices",
                                    f"unknown device '{dev_id}'{did_you_mean(dev_id, cfg.devices)}"))
        elif dev_id in profiles and not set(profiles[dev_id].points) & set(codes):
            problems.append(Problem(f, source.line_of((*path, "devices")), f"uplinks.{up_id}.devices",
                                    f"device {dev_id} has no point with an HJ 212 factor code"
                                    " (see the factor table; add one under 'factors:')"))
    carried = [d for d in (up.devices if up.devices is not None else cfg.devices)
               if d in profiles and set(profiles[d].points) & set(codes)]
    if up.devices is None and not carried:
        problems.append(Problem(f, source.line_of(path), f"uplinks.{up_id}",
                                "no device has a point with an HJ 212 factor code: the uplink would send nothing"
                                " (see the factor table; add codes under 'factors:')"))
    for key, message in up.standard_warnings():
        warnings.append(Problem(f, source.line_of((*path, key)), f"uplinks.{up_id}.{key}", message))


def file_check(path: Path, name: str, secret: bool) -> tuple[str | None, str | None]:
    """(problem, warning) about a file the uplink needs: missing or unreadable is a problem;
    a password file that group or others may read is a warning (as ssh does for keys)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"{name}: {exc.strerror or exc}", None
    if not stat.S_ISREG(mode):
        return f"{name}: not a regular file", None
    if secret and mode & 0o077:
        return None, (f"{name} is readable by {'group and others' if mode & 0o007 else 'its group'}"
                      f" (mode {stat.S_IMODE(mode):04o}); chmod 600 {name}")
    return None, None


