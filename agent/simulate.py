"""``edge-agent simulate``: serve simulated slaves built from catalog profiles.

Slaves are given as ``LINE:UNIT=PROFILE``, where LINE is ``pty`` (a virtual RS-485 line
made with socat; the agent opens the printed path) or ``tcp`` (Modbus TCP). A profile of
protocol dlt645 names a meter address instead of a unit (``pty:000000000001=generic-dlt645-2007``).
One line carries one protocol, as on a real bus: with Modbus slaves on the pty line too,
the meters get a second pty pair named ``dlt645`` (2400 8E1 unless told otherwise).
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
from drivers.dlt645.codec import address_bytes
from drivers.dlt645.simulator import DLT645Simulator, SimMeter
from drivers.dlt645.simulator import Fault as MeterFault
from drivers.modbus.simulator.control import FaultControl
from drivers.modbus.simulator.server import (
    SimContext,
    SimSlave,
    start_serial_server,
    start_tcp_server,
)
from drivers.profile import Profile
from drivers.simulator.pty import PtyPair

log = logging.getLogger(__name__)

SLAVE_SPEC = re.compile(r"^(pty|tcp):(\d{1,12})=(.+)$")
FAULT_SPEC = re.compile(r"^(pty|tcp):(\d{1,12})=(dead|exception|slow|bad_crc|garbage|short)(?::([\d.]+))?$")
SLAVE_HELP = "expected LINE:UNIT=PROFILE (LINE:ADDRESS=PROFILE for a DL/T 645 meter), e.g. pty:1=renke-dust-all-in-one"
# the Modbus fault names as a simulated DL/T 645 meter shows them
METER_FAULTS: dict[str, MeterFault] = {"dead": "dead", "exception": "error", "slow": "slow",
                                       "bad_crc": "bad_checksum", "garbage": "garbage", "short": "short"}


@dataclass
class SimulationPlan:
    pty_slaves: list[SimSlave] = field(default_factory=list)
    tcp_slaves: list[SimSlave] = field(default_factory=list)
    dlt645_meters: list[SimMeter] = field(default_factory=list)


def parse_slaves(specs: list[str], faults: list[str]) -> SimulationPlan:
    plan = SimulationPlan()
    for spec in specs:
        m = SLAVE_SPEC.match(spec)
        if not m:
            raise ValueError(f"bad slave '{spec}': {SLAVE_HELP}")
        line, ident, ref = m.group(1), m.group(2), m.group(3)
        profile = resolve_profile(ref, Path.cwd())
        if profile.protocol == "dlt645":
            plan.dlt645_meters.append(_meter(spec, line, ident, profile, plan.dlt645_meters))
            continue
        if profile.protocol != "modbus":
            raise ValueError(f"{ref}: only Modbus and DL/T 645 profiles are served by this command")
        if len(ident) > 3:
            raise ValueError(f"bad slave '{spec}': {ident} is no Modbus unit ({ref} is a Modbus profile)")
        slave = SimSlave(unit=int(ident), profile=profile)
        (plan.pty_slaves if line == "pty" else plan.tcp_slaves).append(slave)
    for spec in faults:
        m = FAULT_SPEC.match(spec)
        if not m:
            raise ValueError(f"bad fault '{spec}': expected LINE:UNIT=KIND[:RATE], e.g. pty:2=dead")
        line, ident = m.group(1), m.group(2)
        slaves = plan.pty_slaves if line == "pty" else plan.tcp_slaves
        target = next((s for s in slaves if len(ident) <= 3 and s.unit == int(ident)), None)
        if target is None:
            meter = _find_meter(plan.dlt645_meters, ident) if line == "pty" else None
            if meter is None:
                raise ValueError(f"fault '{spec}': no {line} slave with unit or address {ident}")
            meter.fault = METER_FAULTS[m.group(3)]
            meter.fault_rate = float(m.group(4) or 1.0)
            continue
        target.fault = m.group(3)  # type: ignore[assignment]
        target.fault_rate = float(m.group(4) or 1.0)
    return plan


def _meter(spec: str, line: str, address: str, profile: Profile, others: list[SimMeter]) -> SimMeter:
    if line != "pty":
        raise ValueError(f"bad slave '{spec}': DL/T 645 meters are served on a pty line (pty:ADDRESS=PROFILE)")
    try:
        meter = SimMeter(address, profile)
    except ValueError as exc:
        raise ValueError(f"bad slave '{spec}': {exc}") from exc
    if any(m.address == meter.address for m in others):
        raise ValueError(f"bad slave '{spec}': two meters at address {meter.address}")
    return meter


def _find_meter(meters: list[SimMeter], address: str) -> SimMeter | None:
    want = address_bytes(address)
    return next((m for m in meters if address_bytes(m.address) == want), None)


async def serve(plan: SimulationPlan, *, pty_dir: str | None, tcp: str, baudrate: int,
                emulate_timing: bool, ready_file: str | None, stop: asyncio.Event | None = None,
                dlt645_baudrate: int = 2400, dlt645_parity: str = "E") -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    ready: dict[str, Any] = {}
    pair: PtyPair | None = None
    meter_pair: PtyPair | None = None
    meter_sim: DLT645Simulator | None = None
    servers: list[Any] = []
    try:
        if plan.pty_slaves:
            pair = PtyPair(pty_dir)
            ctx = SimContext(plan.pty_slaves, baudrate if emulate_timing else None)
            servers.append(await start_serial_server(pair.device_end, ctx, baudrate=baudrate))
            ready["serial"] = pair.agent_end
            units = ", ".join(f"{s.unit}={s.profile.name}" for s in plan.pty_slaves)
            print(f"virtual RS-485 line for the agent: {pair.agent_end}  (units {units})", flush=True)
        if plan.dlt645_meters:
            # one protocol per line: beside Modbus slaves the meters get a line of their own
            meter_pair = PtyPair(pair.link_dir, name="dlt645") if pair else PtyPair(pty_dir)
            meter_sim = DLT645Simulator(meter_pair.device_end, plan.dlt645_meters, baudrate=dlt645_baudrate,
                                        parity=dlt645_parity, emulate_wire_time=emulate_timing)
            await meter_sim.start()
            ready.setdefault("serial", meter_pair.agent_end)
            ready["dlt645"] = meter_pair.agent_end
            meters = ", ".join(f"{m.address}={m.profile.name}" for m in plan.dlt645_meters)
            print(f"virtual RS-485 line for DL/T 645 meters: {meter_pair.agent_end}  "
                  f"({dlt645_baudrate} 8{dlt645_parity}1, meters {meters})", flush=True)
        if plan.tcp_slaves:
            host, _, port = tcp.rpartition(":")
            ctx = SimContext(plan.tcp_slaves)
            servers.append(await start_tcp_server(host or "127.0.0.1", int(port), ctx))
            ready["tcp"] = tcp
            units = ", ".join(f"{s.unit}={s.profile.name}" for s in plan.tcp_slaves)
            print(f"Modbus TCP: {tcp}  (units {units})", flush=True)
        line_pair = pair or meter_pair
        control = FaultControl((line_pair.link_dir if line_pair else Path(tempfile.mkdtemp(prefix="edge-sim-")))
                               / "faults",
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
        if meter_sim is not None:
            await meter_sim.stop()
        for p in (pair, meter_pair):
            if p is not None:
                p.close()
