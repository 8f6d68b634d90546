"""Change simulated faults while serving, from a control file.

The file states the faults wanted *now*, one per line, as ``LINE:ID=KIND[:RATE]``
(``pty:2=dead``, ``tcp:1=exception:0.2``, ``pty:000000000001=slow``, ``pty:1=none``);
blank lines and ``#`` comments are ignored. Devices not named in it have no fault. Saving
the file applies it within ``interval`` seconds; deleting it leaves the faults as they are.
A line that does not parse is reported and ignored, the others still apply. What the file
holds when serving starts is not applied (the command line's faults are).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .spec import FAULT_NAMES, SimDevice

log = logging.getLogger(__name__)

FAULT_LINE = re.compile(r"^(\w[\w-]*):(\d{1,12})=([a-z_]+)(?::([0-9.]+))?$")


@dataclass(frozen=True)
class FaultSpec:
    line: str
    ident: str
    fault: str
    rate: float = 1.0


def parse_fault(spec: str) -> FaultSpec:
    """``LINE:ID=KIND[:RATE]`` → FaultSpec. Raises ValueError saying what is wrong."""
    m = FAULT_LINE.match(spec.strip())
    if not m:
        raise ValueError(f"'{spec}': expected LINE:UNIT=KIND[:RATE], e.g. pty:2=dead or pty:1=bad_crc:0.1")
    kind = m.group(3)
    if kind not in (*FAULT_NAMES, "none"):
        raise ValueError(f"'{spec}': unknown fault '{kind}' (faults: {', '.join(FAULT_NAMES)}, none)")
    rate = float(m.group(4) or 1.0)
    if not 0 < rate <= 1:
        raise ValueError(f"'{spec}': the rate is a fraction of requests, 0 < RATE <= 1")
    return FaultSpec(m.group(1), m.group(2), kind, rate)


Finder = Callable[[str, str], "SimDevice | None"]


class FaultControl:
    """Applies a control file to the simulated devices: ``find(line, ident)`` names one,
    ``everyone`` lists (label, device) for all, which the file's silence resets."""

    def __init__(self, path: str | Path, find: Finder, everyone: list[tuple[str, SimDevice]],
                 interval: float = 0.3) -> None:
        self.path = Path(path)
        self.find = find
        self.everyone = everyone
        self.interval = interval
        self._seen: tuple[int, int] | None = self._stamp()  # what is there at start is not applied

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def apply_text(self, text: str) -> list[str]:
        """Set every device's fault from ``text``; returns the problems (lines not applied)."""
        wanted: list[tuple[SimDevice, FaultSpec]] = []
        problems = []
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                spec = parse_fault(line)
            except ValueError as exc:
                problems.append(f"{self.path}:{n}: {exc}")
                continue
            device = self.find(spec.line, spec.ident)
            if device is None:
                problems.append(f"{self.path}:{n}: no {spec.line} device with unit or address {spec.ident}")
                continue
            wanted.append((device, spec))
        for _, device in self.everyone:
            device.set_fault("none")
        for device, spec in wanted:
            device.set_fault(spec.fault, spec.rate)
        return problems

    def check(self) -> bool:
        """Apply the file if it changed since last time; True if it was applied."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        problems = self.apply_text(self.path.read_text())
        for p in problems:
            log.warning("%s", p)
        active = [f"{label}={d.fault}" for label, d in self.everyone if d.fault != "none"]
        log.warning("faults now: %s", ", ".join(active) or "none")
        return True

    async def watch(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.interval)
