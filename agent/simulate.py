"""``edge-agent simulate``: serve simulated devices built from catalog profiles.

Devices are given as ``LINE:ID=PROFILE``, where LINE is ``pty`` (a virtual RS-485 line
made with socat; the agent opens the printed path) or ``tcp``, and ID is what addresses
the device on its line in its profile's protocol (a Modbus unit, a DL/T 645 meter
address). One line carries one protocol, as on a real bus: the first protocol on ``pty``
gets the line ``rs485``, each further one a pty pair of its own named after it.
Everything protocol-specific comes from the protocol registry (``drivers/protocols.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers import protocols
from drivers.catalog import resolve_profile
from drivers.simulator.control import FaultControl, parse_fault
from drivers.simulator.pty import PtyPair
from drivers.simulator.spec import SerialLine, ServedLine, SimDevice, SimulationSpec

log = logging.getLogger(__name__)

SLAVE_SPEC = re.compile(r"^(pty|tcp):(\d{1,12})=(.+)$")
SLAVE_HELP = "expected LINE:UNIT=PROFILE (LINE:ADDRESS=PROFILE for a DL/T 645 meter), e.g. pty:1=renke-dust-all-in-one"


@dataclass
class Placed:
    """One simulated device on a line, with the protocol that serves it."""

    protocol: str
    sim: SimulationSpec
    line: str
    device: SimDevice

    @property
    def label(self) -> str:
        return f"{self.line}:{self.sim.label(self.device)}"


@dataclass
class SimulationPlan:
    placed: list[Placed] = field(default_factory=list)

    def on(self, protocol: str, line: str) -> list[Any]:
        """The devices of one protocol on one line, in the order given."""
        return [p.device for p in self.placed if p.protocol == protocol and p.line == line]

    def groups(self, line: str) -> dict[str, list[Placed]]:
        """Per protocol (in order of first appearance), its devices on ``line``."""
        out: dict[str, list[Placed]] = {}
        for p in self.placed:
            if p.line == line:
                out.setdefault(p.protocol, []).append(p)
        return out

    def find(self, line: str, ident: str) -> SimDevice | None:
        """The first device on ``line`` that ``ident`` names (a unit before a meter address)."""
        return next((p.device for p in self.placed if p.line == line and p.sim.answers_to(p.device, ident)), None)


def parse_slaves(specs: list[str], faults: list[str]) -> SimulationPlan:
    plan = SimulationPlan()
    for spec in specs:
        m = SLAVE_SPEC.match(spec)
        if not m:
            raise ValueError(f"bad slave '{spec}': {SLAVE_HELP}")
        line, ident, ref = m.group(1), m.group(2), m.group(3)
        profile = resolve_profile(ref, Path.cwd())
        protocol = protocols.of(profile)
        sim: SimulationSpec | None = protocols.simulation(protocol)
        if sim is None:
            raise ValueError(f"{ref}: {protocol.title} devices cannot be simulated")
        if line == "tcp" and sim.serve_tcp is None:
            raise ValueError(f"bad slave '{spec}': {protocol.title} devices are served on a pty line "
                             f"(pty:{sim.ident_name.upper().replace(' ', '_')}=PROFILE)")
        try:
            device = sim.make(ident, profile)
        except ValueError as exc:
            raise ValueError(f"bad slave '{spec}': {exc}") from exc
        if any(p.protocol == protocol.name and p.line == line and sim.answers_to(p.device, sim.label(device))
               for p in plan.placed):
            raise ValueError(f"bad slave '{spec}': two devices at {sim.ident_name} {sim.label(device)} on {line}")
        plan.placed.append(Placed(protocol.name, sim, line, device))
    for text in faults:
        fault = parse_fault(text)
        target = plan.find(fault.line, fault.ident)
        if target is None:
            raise ValueError(f"fault '{text}': no {fault.line} slave with unit or address {fault.ident}")
        target.set_fault(fault.fault, fault.rate)
    return plan


def _listing(group: list[Placed]) -> str:
    return ", ".join(f"{p.sim.label(p.device)}={p.device.profile.name}" for p in group)


async def serve(plan: SimulationPlan, *, pty_dir: str | None, tcp: str, emulate_timing: bool,
                ready_file: str | None, speeds: Mapping[str, tuple[int, str]] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve ``plan`` until ``stop`` (or SIGTERM/SIGINT). ``speeds``: protocol → (baudrate, parity)
    of its pty line, default the protocol's own."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    ready: dict[str, Any] = {}
    pairs: list[PtyPair] = []
    served: list[ServedLine] = []
    try:
        for name, group in plan.groups("pty").items():
            sim = group[0].sim
            baudrate, parity = (speeds or {}).get(name, sim.serial)
            pair = PtyPair(pairs[0].link_dir, name=sim.pty_name) if pairs else PtyPair(pty_dir)
            pairs.append(pair)
            served.append(await sim.serve_pty(SerialLine(pair.device_end, baudrate, parity, emulate_timing),
                                              [p.device for p in group]))
            ready.setdefault("serial", pair.agent_end)
            if sim.pty_name != "rs485":
                ready[name] = pair.agent_end
            served_here = f"{sim.noun} {_listing(group)}"
            if len(pairs) == 1:
                print(f"virtual RS-485 line for the agent: {pair.agent_end}  ({served_here})", flush=True)
            else:
                print(f"virtual RS-485 line for {protocols.get(name).title} {sim.noun}: {pair.agent_end}  "
                      f"({baudrate} 8{parity}1, {served_here})", flush=True)
        for name, group in plan.groups("tcp").items():
            sim = group[0].sim
            assert sim.serve_tcp is not None
            host, _, port = tcp.rpartition(":")
            served.append(await sim.serve_tcp(host or "127.0.0.1", int(port), [p.device for p in group]))
            ready["tcp"] = tcp
            print(f"{protocols.get(name).title} TCP: {tcp}  ({sim.noun} {_listing(group)})", flush=True)
        control = FaultControl((pairs[0].link_dir if pairs else Path(tempfile.mkdtemp(prefix="edge-sim-"))) / "faults",
                               plan.find, [(p.label, p.device) for p in plan.placed])
        watcher = asyncio.create_task(control.watch())
        example = plan.placed[0].label if plan.placed else "pty:1"
        print(f"change faults while serving: echo '{example}=dead' > {control.path}  ({example}=none: clear)",
              flush=True)
        if ready_file:
            Path(ready_file).write_text(json.dumps(ready))
        await stop.wait()
        watcher.cancel()
    finally:
        for s in served:
            await s.stop()
        for pair in pairs:
            pair.close()
