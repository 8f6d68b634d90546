"""The technician's view of the core commands: once, simulate, demo, --help."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.harness.site import device, serial_bus, tcp_bus, write_site
from agent.localbroker import free_port
from tests.helpers import SimulatorThread, edge_agent, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", ["run", "check", "once", "simulate", "demo"])
def test_every_command_has_help_with_examples_or_explanation(command: str) -> None:
    r = edge_agent(command, "--help")
    assert r.returncode == 0
    assert f"usage: edge-agent {command}" in r.stdout
    assert len(r.stdout.splitlines()) > 5


def test_once_prints_decoded_values_with_units(tmp_path: Path) -> None:
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one"}, tcp={3: "eastron-sdm630"}).start()
    try:
        cfg = write_site(
            tmp_path / "c.yaml", data_dir=tmp_path / "data",
            buses={"rs485-1": serial_bus(sim.serial_port), "lan": tcp_bus(sim.tcp_port)},
            devices={"dust-1": device("rs485-1", "renke-dust-all-in-one", 1),
                     "meter-1": device("lan", "eastron-sdm630", 3),
                     "ghost": device("lan", "eastron-sdm630", 9)})
        r = edge_agent("once", "-c", str(cfg), "--device", "dust-1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "dust-1  (renke-dust-all-in-one, unit 1 on rs485-1)  ok" in r.stdout
        pm = re.search(r"pm2_5\s+(\d+) µg/m³", r.stdout)
        assert pm and sim.slave("pty", 1).was_served("pm2_5", int(pm.group(1)))
        assert re.search(r"temperature\s+-?\d+(\.\d)? °C", r.stdout)
        r = edge_agent("once", "-c", str(cfg))
        assert r.returncode == 1  # the ghost unit does not answer
        assert re.search(r"meter-1 .* ok", r.stdout)
        assert "ghost  (eastron-sdm630, unit 9 on lan)  FAILED: " in r.stdout
        assert not (tmp_path / "data").exists(), "once must not touch the buffer"
        r = edge_agent("once", "-c", str(cfg), "--device", "dust1")
        assert r.returncode == 1 and "did you mean 'dust-1'" in r.stderr
    finally:
        sim.stop()


def test_simulate_serves_a_tcp_slave_until_terminated(tmp_path: Path) -> None:
    port = free_port()
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "simulate", "--tcp", f"127.0.0.1:{port}",
                             "--ready-file", str(ready), "tcp:1=eastron-sdm630"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready.exists, 20, "the simulator to be ready")
        assert json.loads(ready.read_text()) == {"tcp": f"127.0.0.1:{port}"}
        cfg = write_site(tmp_path / "c.yaml", data_dir=tmp_path / "d", buses={"lan": tcp_bus(port)},
                         devices={"m": device("lan", "eastron-sdm630", 1)})
        r = edge_agent("once", "-c", str(cfg))
        assert r.returncode == 0, r.stdout
        assert re.search(r"voltage_l1\s+2[1-4]\d(\.\d+)? V", r.stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"Modbus TCP: 127.0.0.1:{port}  (units 1=eastron-sdm630)" in out


def test_simulate_rejects_a_bad_slave_spec() -> None:
    r = edge_agent("simulate", "pty:1=no-such-profile")
    assert r.returncode == 2 and "unknown profile 'no-such-profile'" in r.stderr
    r = edge_agent("simulate", "usb:1=eastron-sdm630")
    assert r.returncode == 2 and "expected LINE:UNIT=PROFILE" in r.stderr


def test_demo_shows_readings_from_all_three_devices_within_15s() -> None:
    started = time.monotonic()
    r = edge_agent("demo", "--duration", "8", timeout=90)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for name in ("dust-1", "level-1", "meter-1"):
        assert re.search(rf"{name}\s+seq \d+\s+\S+=", r.stdout), name
    firsts = re.search(r"readings from all 3 devices \((.*)\)", r.stdout)
    assert firsts, r.stdout[-2000:]
    for seconds in re.findall(r"after ([\d.]+)s", firsts.group(1)):
        assert float(seconds) < 15
    assert re.search(r"pm2_5=\d+ µg/m³", r.stdout) and re.search(r"energy_import=[\d.]+ kWh", r.stdout)
    # the dust monitor reported over HJ 212 beside MQTT
    assert re.search(r"HJ 212 platform: CN=2011 .*a34002-Rtd=\d+", r.stdout), r.stdout[-2000:]
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("args", [
    ["hj212-server", "--port", "99999"],
    ["simulate", "--tcp", "127.0.0.1:99999", "tcp:1=eastron-sdm630"],
    ["probe", "--host", "127.0.0.1:70000", "--unit", "1", "--address", "0", "--count", "1"],
])
def test_a_port_out_of_range_is_a_usage_error_not_a_traceback(args: list[str]) -> None:
    r = edge_agent(*args)
    assert r.returncode == 2
    assert "is outside 1-65535" in r.stderr and "Traceback" not in r.stderr
