"""A DL/T 645 meter through the agent's config, wiring and `once`, on a real pty line."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest

from agent.harness.site import device, serial_bus, write_site
from drivers.catalog import resolve_profile
from drivers.dlt645.simulator import DLT645Simulator, SimMeter
from drivers.simulator.pty import PtyPair
from tests.helpers import edge_agent

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]


def test_once_reads_a_dlt645_meter_from_config(tmp_path: Path) -> None:
    meter = SimMeter("000000000001", resolve_profile("generic-dlt645-2007"))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    with PtyPair() as pair:
        started = threading.Event()

        async def serve() -> None:
            async with DLT645Simulator(pair.device_end, [meter], baudrate=2400, parity="E"):
                started.set()
                await stop.wait()

        t = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        t.start()
        assert started.wait(10)
        try:
            cfg = write_site(
                tmp_path / "c.yaml", data_dir=tmp_path / "d",
                buses={"rs485-2": serial_bus(pair.agent_end, baudrate=2400, parity="E")},
                devices={"meter-2": device("rs485-2", "generic-dlt645-2007", address="000000000001")})
            r = edge_agent("once", "-c", str(cfg))
        finally:
            loop.call_soon_threadsafe(stop.set)
            t.join(10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "meter-2  (generic-dlt645-2007, meter 000000000001 on rs485-2)  ok" in r.stdout
    kwh = re.search(r"energy_import\s+([\d.]+) kWh", r.stdout)
    assert kwh and float(kwh.group(1)) in [float(v) for v in meter.history["energy_import"]]
    assert re.search(r"voltage_l1\s+[\d.]+ V", r.stdout)


def test_check_rejects_mixed_protocols_and_bad_meter_addresses(tmp_path: Path) -> None:
    cfg = write_site(
        tmp_path / "c.yaml", data_dir=tmp_path / "d",
        buses={"rs485-1": serial_bus("/dev/ttyUSB0", baudrate=2400, parity="E")},
        devices={"meter-1": device("rs485-1", "generic-dlt645-2007", address="12345678901X"),
                 "dust-1": device("rs485-1", "renke-dust-all-in-one", 1)})
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}:7: devices.meter-1.address:" in r.stdout
    assert "cannot share bus rs485-1 with the dlt645 device meter-1" in r.stdout
