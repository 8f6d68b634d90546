"""A site's config file, written from plain data: the gateway, its buses and devices, its
uplinks (MQTT and HJ 212) and any further top-level sections.

Each bus, device and uplink is written on one line as a YAML flow mapping, so the file reads
like a hand-written one and every entry keeps a line of its own (``edge-agent check`` points
at it). Values go through PyYAML, which quotes what would otherwise change type (a meter
address of digits, ``'3.1.1'``, ``'on'``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

LOCALHOST = "127.0.0.1"


def flow(value: Any) -> str:
    """``value`` as one line of YAML flow style."""
    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=float("inf"),
                               allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def tcp_bus(port: int, host: str = LOCALHOST, **settings: Any) -> dict[str, Any]:
    """A Modbus TCP bus (``timeout``, ``retries`` ... as keyword arguments)."""
    return {"type": "tcp", "host": host, "port": port, **settings}


def serial_bus(port: str, **settings: Any) -> dict[str, Any]:
    """A serial (RS-485) bus on the device file ``port`` (``baudrate``, ``parity`` ...)."""
    return {"type": "serial", "port": port, **settings}


def device(bus: str, profile: str | Path, unit: int | None = None, *, address: str | None = None,
           interval: str | None = None, **settings: Any) -> dict[str, Any]:
    """A device on ``bus``: a Modbus ``unit`` or a DL/T 645 ``address``; more settings as keywords."""
    spec: dict[str, Any] = {"bus": bus}
    if unit is not None:
        spec["unit"] = unit
    if address is not None:
        spec["address"] = address
    spec["profile"] = str(profile)
    if interval is not None:
        spec["interval"] = interval
    return {**spec, **settings}


def mqtt_uplink(port: int | None, host: str = LOCALHOST, **settings: Any) -> dict[str, Any]:
    """The usual test and bench uplink: MQTT to a local broker on ``port`` (None: the default port)."""
    return {"type": "mqtt", "host": host, **({"port": port} if port is not None else {}), **settings}


def hj212_uplink(port: int, mn: str, devices: list[str], host: str = LOCALHOST, **settings: Any) -> dict[str, Any]:
    """An HJ 212-2017 uplink reporting ``devices`` as monitoring point ``mn``."""
    return {"type": "hj212", "host": host, "port": port, "mn": mn, "devices": list(devices), **settings}


def _entries(name: str, entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not entries:
        return [f"{name}: {{}}"]
    return [f"{name}:", *(f"  {_item(key, dict(spec))}" for key, spec in entries.items())]


def _sections(extra: Mapping[str, Any] | str) -> list[str]:
    if isinstance(extra, str):
        return extra.rstrip("\n").splitlines()
    lines: list[str] = []
    for key, value in extra.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{flow(key)}:")
            lines += [f"  {_item(k, v)}" for k, v in value.items()]
        else:
            lines.append(_item(key, value))
    return lines


def _item(key: str, value: Any) -> str:
    return f"{flow(key)}: {flow(value)}"


def site_text(*, data_dir: str | Path, gateway: str = "site-test", buses: Mapping[str, Mapping[str, Any]] | None = None,
              devices: Mapping[str, Mapping[str, Any]] | None = None,
              uplinks: Mapping[str, Mapping[str, Any]] | None = None, extra: Mapping[str, Any] | str = "",
              gateway_settings: Mapping[str, Any] | None = None, comment: str = "") -> str:
    """The config file's text. ``extra`` holds further top-level sections (``buffer``,
    ``alarms``, ``logging`` ...) as data, or as YAML text written as it is."""
    head = [f"# {line}".rstrip() for line in comment.splitlines()]
    gw = {"id": gateway, "data_dir": str(data_dir), **(gateway_settings or {})}
    lines = [*head, "gateway:", *(f"  {_item(k, v)}" for k, v in gw.items())]
    lines += _entries("buses", buses or {})
    lines += _entries("devices", devices or {})
    lines += _entries("uplinks", uplinks or {})
    lines += _sections(extra)
    return "\n".join(lines) + "\n"


def write_site(path: Path, *, data_dir: str | Path, gateway: str = "site-test",
               buses: Mapping[str, Mapping[str, Any]] | None = None,
               devices: Mapping[str, Mapping[str, Any]] | None = None,
               uplinks: Mapping[str, Mapping[str, Any]] | None = None, extra: Mapping[str, Any] | str = "",
               gateway_settings: Mapping[str, Any] | None = None, comment: str = "") -> Path:
    """Write the config file (see ``site_text``) to ``path`` and return ``path``."""
    path.write_text(site_text(data_dir=data_dir, gateway=gateway, buses=buses, devices=devices, uplinks=uplinks,
                              extra=extra, gateway_settings=gateway_settings, comment=comment), encoding="utf-8")
    return path
