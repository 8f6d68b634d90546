"""Change simulated faults while serving, from a control file.

The file states the faults wanted *now*, one per line, as ``LINE:UNIT=KIND[:RATE]``
(``pty:2=dead``, ``tcp:1=exception:0.2``, ``pty:1=none``); blank lines and ``#`` comments
are ignored. Slaves not named in it have no fault. Saving the file applies it within
``interval`` seconds; deleting it leaves the faults as they are. A line that does not parse
is reported and ignored, the others still apply. What the file holds when serving starts is
not applied (the command line's faults are).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .server import FAULTS, Fault, SimSlave

log = logging.getLogger(__name__)

FAULT_LINE = re.compile(r"^(\w[\w-]*):(\d{1,3})=([a-z_]+)(?::([0-9.]+))?$")


@dataclass(frozen=True)
class FaultSpec:
    line: str
    unit: int
    fault: Fault
    rate: float = 1.0


def parse_fault(spec: str) -> FaultSpec:
    """``LINE:UNIT=KIND[:RATE]`` → FaultSpec. Raises ValueError saying what is wrong."""
    m = FAULT_LINE.match(spec.strip())
    if not m:
        raise ValueError(f"'{spec}': expected LINE:UNIT=KIND[:RATE], e.g. pty:2=dead or pty:1=bad_crc:0.1")
    kind = m.group(3)
    if kind not in FAULTS:
        raise ValueError(f"'{spec}': unknown fault '{kind}' (faults: {', '.join(FAULTS)})")
    rate = float(m.group(4) or 1.0)
    if not 0 < rate <= 1:
        raise ValueError(f"'{spec}': the rate is a fraction of requests, 0 < RATE <= 1")
    return FaultSpec(m.group(1), int(m.group(2)), cast(Fault, kind), rate)


class FaultControl:
    """Applies a control file to the slaves, keyed by (line, unit)."""

    def __init__(self, path: str | Path, slaves: dict[tuple[str, int], SimSlave], interval: float = 0.3) -> None:
        self.path = Path(path)
        self.slaves = slaves
        self.interval = interval
        self._seen: tuple[int, int] | None = self._stamp()  # what is there at start is not applied

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def apply_text(self, text: str) -> list[str]:
        """Set every slave's fault from ``text``; returns the problems (lines not applied)."""
        wanted: dict[tuple[str, int], FaultSpec] = {}
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
            if (spec.line, spec.unit) not in self.slaves:
                problems.append(f"{self.path}:{n}: no {spec.line} slave with unit {spec.unit}")
                continue
            wanted[spec.line, spec.unit] = spec
        for key, slave in self.slaves.items():
            want = wanted.get(key)
            slave.set_fault(want.fault if want else "none", want.rate if want else 1.0)
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
        active = [f"{k[0]}:{k[1]}={s.fault}" for k, s in self.slaves.items() if s.fault != "none"]
        log.warning("faults now: %s", ", ".join(active) or "none")
        return True

    async def watch(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.interval)
