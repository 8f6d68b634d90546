"""A dead slave on a shared RS-485 line must not disturb the live ones, and must come back.

Five simulated slaves on one pty line with wire-time emulation at 9600 baud; the agent's
DevicePoller and ModbusBus with their defaults (timeout 0.5 s, one retry), interval 1 s.
One slave is dead. Once it is offline, the four live ones must keep their interval: the
spacing of their readings (when the values arrived) stays within 10 % of 1 s, though the
dead one is still probed, one timeout per back-off period. Revived, it is back within one
back-off period. Runtime about 14 s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import pytest

from agent.scheduler import DevicePoller
from drivers.modbus.bus import ModbusBus
from drivers.modbus.device import ModbusDevice
from drivers.modbus.simulator.runner import SimRunner
from drivers.reading import Reading

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

INTERVAL = 1.0
BACKOFF_MAX = 4.0
LIVE = {1: "renke-dust-all-in-one", 2: "generic-radar-level-80ghz", 3: "generic-submersible-level-transmitter",
        4: "generic-tipping-bucket-rain-gauge"}
DEAD = 5


@dataclass
class Arrival:
    unit: int
    at: float  # monotonic, when the poll's reading was handed on
    reading: Reading


async def scenario(sim: SimRunner, arrivals: list[Arrival]) -> dict[str, float]:
    bus = ModbusBus("rs485-1", "serial", port=sim.port, baudrate=9600)
    pollers: dict[int, DevicePoller] = {}
    for unit in [DEAD, *LIVE]:  # config order; the dead one first, so it is first due at each slot
        dev = ModbusDevice(bus, unit, sim.slave(unit).profile)

        def submit(r: Reading, unit: int = unit) -> None:
            arrivals.append(Arrival(unit, time.monotonic(), r))

        pollers[unit] = DevicePoller(f"dev-{unit}", dev.read, INTERVAL, submit, backoff_max=BACKOFF_MAX)
    dead = pollers[DEAD]
    tasks = [asyncio.create_task(p.run()) for p in pollers.values()]
    marks: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 8 * INTERVAL
        while not dead.offline:
            assert time.monotonic() < deadline, f"the dead slave never went offline: {dead.last_status}"
            await asyncio.sleep(0.05)
        marks["offline"] = time.monotonic()
        timeouts_before = bus.stats.by_unit[DEAD, "timeout"]
        # two probes fall in the window: after the first back-off (2 s) and the second (4 s)
        while bus.stats.by_unit[DEAD, "timeout"] - timeouts_before < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.8 * INTERVAL)  # the live polls of the next slot, after the probe
        marks["measured"] = time.monotonic()
        marks["probes"] = bus.stats.by_unit[DEAD, "timeout"] - timeouts_before
        marks["backoff"] = dead.backoff
        sim.slave(DEAD).set_fault("none")
        marks["revived"] = time.monotonic()
        while dead.offline:
            await asyncio.sleep(0.02)
            assert time.monotonic() - marks["revived"] < 3 * BACKOFF_MAX, "the revived slave never came back"
        marks["back"] = time.monotonic()
        await asyncio.sleep(1.5 * INTERVAL)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
    return marks


def test_a_dead_slave_costs_the_live_ones_nothing_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.scheduler")
    sim = SimRunner({**LIVE, DEAD: "renke-rs-ws-n01"}, "pty", baudrate=9600, emulate_timing=True)
    sim.slave(DEAD).set_fault("dead")
    arrivals: list[Arrival] = []
    with sim:
        marks = asyncio.run(asyncio.wait_for(scenario(sim, arrivals), 40))

    # while the dead slave was offline, the live ones kept their interval
    window = [a for a in arrivals if marks["offline"] <= a.at <= marks["measured"]]
    assert marks["measured"] - marks["offline"] >= 5.0, marks
    for unit in LIVE:
        mine = [a for a in window if a.unit == unit]
        assert all(a.reading.status == "ok" for a in mine), [a.reading.status for a in mine]
        gaps = [b.at - a.at for a, b in itertools.pairwise(mine)]
        assert len(gaps) >= 4, (unit, gaps)
        off = [round(g, 3) for g in gaps if abs(g - INTERVAL) > 0.1 * INTERVAL]
        assert not off, f"unit {unit}: reading spacing off by more than 10 %: {off} of {[round(g, 3) for g in gaps]}"
        ts_gaps = [(b.reading.ts - a.reading.ts) / 1000 for a, b in itertools.pairwise(mine)]
        assert all(abs(g - INTERVAL) <= 0.1 * INTERVAL for g in ts_gaps), ts_gaps

    # the dead one was probed once per back-off period, its other slots were 'offline' readings
    assert marks["probes"] == 2, marks
    dead = [a.reading.status for a in window if a.unit == DEAD]
    assert dead.count("timeout") == 2 and set(dead) == {"timeout", "offline"}, dead

    # revived, it is back within one back-off period, with values
    assert marks["back"] - marks["revived"] <= marks["backoff"] + 0.2, marks
    after = [a for a in arrivals if a.unit == DEAD and a.at >= marks["back"] - 0.1]
    assert after and after[0].reading.status == "ok" and after[0].reading.values

    # each change of state is logged once
    text = caplog.text
    assert text.count("dev-5: offline after 3 polls without an answer") == 1, text
    assert text.count("dev-5: back online") == 1, text
    assert text.count("dev-5: timeout") == 1, text
    assert not any(f"dev-{u}" in text for u in LIVE), text
