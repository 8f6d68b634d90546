"""The supported-devices table, generated from the catalog (DESIGN principle 7).

``python -m drivers.catalog_doc > docs/supported-devices.md`` writes the committed copy;
a test fails while the copy and the catalog disagree. Nothing here depends on the agent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from . import protocols
from .catalog import catalog, resolve_profile
from .profile import Profile

DOC_PATH = "docs/supported-devices.md"
REGENERATE = f"python -m drivers.catalog_doc > {DOC_PATH}"

CATEGORY_ORDER = ("dust", "weather", "water", "energy", "lighting", "other")

HEADER = f"""# Supported devices

<!-- Generated from drivers/profiles by `{REGENERATE}`. Do not edit by hand. -->

Each row is a profile shipped in `drivers/profiles/<vendor>/<model>.yaml`. A device in the
config names it by its profile name (`profile: eastron-sdm630`); a device that is not
listed gets a profile file of its own, named by path (`profile: ./profiles/my-meter.yaml`).
Serial settings are the factory defaults: check the device's own settings before blaming
the wiring. Where a profile's register map is an assumption, the description in its file says so.
"""

COLUMNS = ("Category", "Vendor", "Model", "Profile", "Protocol", "Serial default", "Points (unit; ✎ writable)")


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _protocol(profile: Profile) -> str:
    return protocols.of(profile).summary(profile)


def _serial(profile: Profile) -> str:
    s = profile.serial
    if s is None:
        return "—"
    return f"{s.baudrate} {s.bytesize}{s.parity}{s.stopbits}"


def _points(profile: Profile) -> str:
    parts = []
    for name in profile.points:
        unit = profile.unit_of(name)
        mark = " ✎" if getattr(profile.points[name], "writable", False) else ""
        parts.append(f"{name} ({unit}){mark}" if unit else f"{name}{mark}")
    return ", ".join(parts)


def _sort_key(profile: Profile) -> tuple[int, str, str]:
    category = CATEGORY_ORDER.index(profile.category) if profile.category in CATEGORY_ORDER else 99
    return (category, profile.vendor.lower(), profile.name)


def render_supported_devices(profiles: Iterable[Profile] | None = None) -> str:
    """The Markdown document listing ``profiles`` (default: the whole catalog)."""
    chosen = list(profiles) if profiles is not None else [resolve_profile(n) for n in catalog()]
    lines = [HEADER, f"{len(chosen)} profiles.", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for p in sorted(chosen, key=_sort_key):
        row = (p.category, p.vendor, p.model, f"`{p.name}`", _protocol(p), _serial(p), _points(p))
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    # Bytes, not print(): a gateway's C locale would refuse "µg/m³" on a text stream.
    sys.stdout.buffer.write(render_supported_devices().encode("utf-8"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
