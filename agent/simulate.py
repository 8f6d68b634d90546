"""``edge-agent simulate``: serve simulated slaves built from catalog profiles.

Slaves are given as ``LINE:UNIT=PROFILE``, where LINE is ``pty`` (a virtual RS-485 line
made with socat; the agent opens the printed path) or ``tcp`` (Modbus TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.catalog import resolve_profile
from drivers.simulator.control import FaultControl
from drivers.simulator.modbus_server import (
    SimContext,
    SimSlave,
    start_serial_server,
    start_tcp_server,
)
from drivers.simulator.pty import PtyPair

log = logging.getLogger(__name__)

SLAVE_SPEC = re.compile(r"^(pty|tcp):(\d{1,3})=(.+)$")
FAULT_SPEC = re.compile(r"^(pty|tcp):(\d{1,3})=(dead|exception|slow|bad_crc|garbage|short)(?::([\d.]+))?$")


@dataclass
class SimulationPlan:
    pty_slaves: list[SimSlave] = field(default_factory=list)
    tcp_slaves: list[SimSlave] = field(default_factory=list)


def parse_slaves(specs: list[str], faults: list[str]) -> SimulationPlan:
    plan = SimulationPlan()
    for spec in specs:
        m = SLAVE_SPEC.match(spec)
        if not m:
            raise ValueError(f"bad slave '{spec}': expected LINE:UNIT=PROFILE, e.g. pty:1=renke-dust-all-in-one")
        line, unit, ref = m.group(1), int(m.group(2)), m.group(3)
        profile = resolve_profile(ref, Path.cwd())
        if profile.protocol != "modbus":
            raise ValueError(f"{ref}: only Modbus profiles are served by this command")
        slave = SimSlave(unit=unit, profile=profile)
        (plan.pty_slaves if line == "pty" else plan.tcp_slaves).append(slave)
    for spec in faults:
        m = FAULT_SPEC.match(spec)
        if not m:
            raise ValueError(f"bad fault '{spec}': expected LINE:UNIT=KIND[:RATE], e.g. pty:2=dead")
        line, unit = m.group(1), int(m.group(2))
        slaves = plan.pty_slaves if line == "pty" else plan.tcp_slaves
        target = next((s for s in slaves if s.unit == unit), None)
        if target is None:
            raise ValueError(f"fault '{spec}': no {line} slave with unit {unit}")
        target.fault = m.group(3)  # type: ignore[assignment]
        target.fault_rate = float(m.group(4) or 1.0)
    return plan


async def serve(plan: SimulationPlan, *, pty_dir: str | None, tcp: str, baudrate: int,
                emulate_timing: bool, ready_file: str | None, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    ready: dict[str, Any] = {}
    pair: PtyPair | None = None
    servers: list[Any] = []
    try:
        if plan.pty_slaves:
            pair = PtyPair(pty_dir)
            ctx = SimContext(plan.pty_slaves, baudrate if emulate_timing else None)
            servers.append(await start_serial_server(pair.device_end, ctx, baudrate=baudrate))
            ready["serial"] = pair.agent_end
            units = ", ".join(f"{s.unit}={s.profile.name}" for s in plan.pty_slaves)
            print(f"virtual RS-485 line for the agent: {pair.agent_end}  (units {units})", flush=True)
        if plan.tcp_slaves:
            host, _, port = tcp.rpartition(":")
            ctx = SimContext(plan.tcp_slaves)
            servers.append(await start_tcp_server(host or "127.0.0.1", int(port), ctx))
            ready["tcp"] = tcp
            units = ", ".join(f"{s.unit}={s.profile.name}" for s in plan.tcp_slaves)
            print(f"Modbus TCP: {tcp}  (units {units})", flush=True)
        control = FaultControl((pair.link_dir if pair else Path(tempfile.mkdtemp(prefix="edge-sim-"))) / "faults",
                               {**{("pty", s.unit): s for s in plan.pty_slaves},
                                **{("tcp", s.unit): s for s in plan.tcp_slaves}})
        watcher = asyncio.create_task(control.watch())
        print(f"change faults while serving: echo 'pty:2=dead' > {control.path}  (none: clear)", flush=True)
        if ready_file:
            Path(ready_file).write_text(json.dumps(ready))
        await stop.wait()
        watcher.cancel()
    finally:
        for server in servers:
            await server.shutdown()
        if pair is not None:
            pair.close()
