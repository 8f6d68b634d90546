"""The technician's tools for DL/T 645 meters: ``probe --dlt645`` and ``simulate`` serving meters.

The probe runs as the real ``edge-agent`` process against DLT645Simulator on a socat pty
pair; ``simulate`` serves a meter beside a Modbus slave and ``once`` reads both lines.
Each probe gets a fresh pty pair: the kernel here refuses parity on a pty whose speed is
already set (reopening a line at 2400 8E1 fails), as it does not on a real adapter.
Runtime about 12 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.harness.site import device, serial_bus, write_site
from agent.simulate import parse_slaves
from drivers.catalog import load_profile_file
from drivers.dlt645 import decodings
from drivers.dlt645.simulator import DLT645Simulator, SimMeter
from drivers.simulator.pty import PtyPair
from tests.helpers import edge_agent, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]

METER = """\
name: test-dlt645-constants
vendor: Test
model: M-1
protocol: dlt645
serial: {baudrate: 2400, parity: E, stopbits: 1}
points:
  voltage_l1: {di: 02-01-01-00, format: XXX.X, sim: {pattern: constant, value: 231.5}}
  current_l1: {di: 02-02-01-00, format: XXX.XXX, signed: true, sim: {pattern: constant, value: -1.234}}
  register_a: {di: 04-00-04-09, format: XXXX.XX, unit: "", sim: {pattern: constant, value: 1234.56}}
  register_b: {di: 04-00-04-0A, format: XX.XX, signed: true, unit: "", sim: {pattern: constant, value: -12.34}}
"""


@pytest.fixture
def meter(tmp_path: Path) -> SimMeter:
    path = tmp_path / "meter.yaml"
    path.write_text(METER)
    return SimMeter("000000000001", load_profile_file(path))


@contextmanager
def meter_line(*meters: SimMeter) -> Iterator[str]:
    """Simulated meters on a fresh pty pair, served from their own thread; yields the agent end."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    with PtyPair() as pair:

        async def serve() -> None:
            async with DLT645Simulator(pair.device_end, list(meters), baudrate=2400, parity="E"):
                started.set()
                await stop.wait()

        t = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        t.start()
        assert started.wait(10)
        try:
            yield pair.agent_end
        finally:
            loop.call_soon_threadsafe(stop.set)
            t.join(10)
            loop.close()


def probe(meter: SimMeter, *args: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    with meter_line(meter) as port:
        return port, edge_agent("probe", "--port", port, "--dlt645", *args)


def row(out: str, start: str) -> list[str]:
    rows = [ln.split() for ln in out.splitlines() if ln.split()[:1] == [start]]
    assert rows, f"no row for {start} in:\n{out}"
    return rows[0]


# -- probe --------------------------------------------------------------------------------

def test_probe_reads_the_address_then_decodes_known_identifiers_with_units(meter: SimMeter) -> None:
    port, r = probe(meter, "--di", "02-01-01-00", "--di", "02-02-01-00")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"meter 000000000001 @ {port} 2400 8E1  (address read from the line in ")
    assert "02-01-01-00  phase A voltage: 231.5 V  (format XXX.X)" in r.stdout
    assert "02-02-01-00  phase A current: -1.234 A  (format XXX.XXX, signed)" in r.stdout
    # the value bytes as on the wire, 0x33 removed, low byte first; the sign in the top bit
    assert "  raw 15 23  (2 bytes, 0x33 removed, low byte first)" in r.stdout
    assert "  raw 34 12 80  (3 bytes, " in r.stdout
    assert meter.requests == 3  # read address, then one read per identifier


def test_probe_protocol_dlt645_is_the_same_as_the_dlt645_flag(meter: SimMeter) -> None:
    with meter_line(meter) as port:
        r = edge_agent("probe", "--port", port, "--protocol", "dlt645", "--meter", "1", "--di", "02-01-01-00", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["line"] == f"{port} 2400 8E1" and doc["meter"] == "000000000001" and doc["status"] == "ok"
    assert [(i["di"], i["value"], i["unit"]) for i in doc["items"]] == [("02-01-01-00", 231.5, "V")]


def test_probe_shows_every_plausible_bcd_decoding_of_an_unknown_identifier(meter: SimMeter) -> None:
    _, r = probe(meter, "--meter", "1", "--di", "04-00-04-09", "--di", "04-00-04-0a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "04-00-04-09  not in the table of common identifiers" in r.stdout
    assert "  raw 56 34 12  (3 bytes" in r.stdout and "digits 123456; plausible BCD decodings:" in r.stdout
    assert [row(r.stdout, f)[1] for f in ("XXXXXX", "XXXXX.X", "XXXX.XX", "XXX.XXX", "XX.XXXX")] == \
        ["123456", "12345.6", "1234.56", "123.456", "12.3456"]
    # 34 92: unsigned 9234, or -1234 with the top bit as a sign
    assert "digits 9234; plausible BCD decodings:" in r.stdout
    assert row(r.stdout, "XX.XX") == ["XX.XX", "92.34", "-12.34"]
    assert row(r.stdout, "X.XXX") == ["X.XXX", "9.234", "-1.234"]


def test_probe_json_gives_values_candidates_and_failures(meter: SimMeter) -> None:
    port, r = probe(meter, "--meter", "000000000001", "--di", "02-01-01-00", "--di", "04-00-04-09",
                    "--di", "02-03-00-00", "--json")
    assert r.returncode == 1, r.stdout + r.stderr  # the meter has no 02-03-00-00
    doc = json.loads(r.stdout)
    assert doc["meter"] == "000000000001" and doc["line"] == f"{port} 2400 8E1"
    assert doc["address_read"] is False and doc["status"] == "exception_02"
    known, unknown, missing = doc["items"]
    assert {k: known[k] for k in ("di", "status", "raw", "bytes", "value", "unit", "description", "format")} == {
        "di": "02-01-01-00", "status": "ok", "raw": "15 23", "bytes": 2, "value": 231.5, "unit": "V",
        "description": "phase A voltage", "format": "XXX.X"}
    assert unknown["raw"] == "56 34 12" and unknown["digits"] == "123456" and "value" not in unknown
    assert {"format": "XXXX.XX", "signed": False, "value": 1234.56} in unknown["candidates"]
    assert missing["status"] == "exception_02" and "no requested data" in missing["error"]
    assert "manual" in missing["hint"]


@pytest.mark.parametrize("args,dead,head,hint", [
    (["--meter", "000000000099"], False, "meter 000000000099 @ ", "check the meter address"),  # wrong address
    ([], True, "meter ? @ ", "no meter answered the read-address request"),  # a dead line
])
def test_probe_says_why_a_meter_gave_nothing(meter: SimMeter, args: list[str], dead: bool, head: str,
                                             hint: str) -> None:
    if dead:
        meter.fault = "dead"
    _, r = probe(meter, *args, "--di", "02-01-01-00", "--timeout", "0.2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith(head)
    assert ": timeout: " in r.stdout
    assert hint in r.stdout and "2400 8E1" in r.stdout and "A/B wiring" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--port", "/dev/null", "--di", "02-01-01-00"], "--meter and --di are for DL/T 645 meters: add --dlt645"),
    (["--host", "192.0.2.1", "--dlt645", "--di", "02-01-01-00"], "use --port"),
    (["--port", "/dev/null", "--dlt645", "--di", "02-01-01"], "must be four hex bytes"),
    (["--port", "/dev/null", "--dlt645", "--meter", "1"], "nothing to read: give --di"),
    (["--port", "/dev/null", "--dlt645", "--unit", "3", "--di", "02-01-01-00"],
     "--unit, --table, --address and --count are for Modbus devices: add --protocol modbus"),
    (["--port", "/dev/null", "--protocol", "dlt645", "--rtu-over-tcp", "--di", "02-01-01-00"], "use --port"),
])
def test_probe_rejects_what_it_cannot_do(args: list[str], message: str) -> None:
    r = edge_agent("probe", *args)
    assert r.returncode == 2 and message in r.stderr


def test_bcd_candidates_skip_what_is_not_bcd() -> None:
    assert decodings.candidates(b"") == []
    assert decodings.candidates(b"\x1a\x02") == []  # a nibble above 9: binary, not BCD
    found = decodings.candidates(b"\x05\xa1")  # only BCD once the sign bit is cleared
    assert [(c.format, c.signed, c.text) for c in found][:2] == [("XXXX", True, "-2105"), ("XXX.X", True, "-210.5")]
    assert [c.text for c in decodings.candidates(b"\x00\x80")] == ["8000", "800.0", "80.00", "8.000",
                                                                    "0", "0.0", "0.00", "0.000"]


# -- simulate -------------------------------------------------------------------------------

def test_simulate_slave_specs_for_meters() -> None:
    plan = parse_slaves(["pty:1=renke-dust-all-in-one", "pty:1=generic-dlt645-2007",
                         "pty:000000000002=generic-dlt645-2007"], ["pty:2=dead", "pty:1=bad_crc:0.5"])
    meters = plan.on("dlt645", "pty")
    assert [m.address for m in meters] == ["000000000001", "000000000002"]
    assert meters[1].fault == "dead"  # no Modbus unit 2: the meter at ...02
    assert plan.on("modbus", "pty")[0].fault == "bad_crc" and meters[0].fault == "none"
    for specs, message in [
        (["tcp:000000000001=generic-dlt645-2007"], "served on a pty line"),
        (["pty:1=generic-dlt645-2007", "pty:000000000001=generic-dlt645-2007"],
         "two devices at meter address 000000000001"),
        (["pty:1234=eastron-sdm630"], "1234 is no Modbus unit"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_slaves(specs, [])


def test_simulate_serves_meters_on_their_own_line_beside_modbus_and_once_reads_both(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    pty_dir = tmp_path / "pty"
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "simulate", "--pty-dir", str(pty_dir),
                             "--ready-file", str(ready), "pty:1=renke-dust-all-in-one",
                             "pty:000000000001=generic-dlt645-2007", "pty:000000000002=generic-dlt645-2007"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready.exists, 20, "the simulator to be ready")
        lines = json.loads(ready.read_text())
        assert lines == {"serial": str(pty_dir / "rs485-agent"), "dlt645": str(pty_dir / "dlt645-agent")}
        cfg = write_site(
            tmp_path / "c.yaml", data_dir=tmp_path / "d",
            buses={"rs485-1": serial_bus(lines["serial"]),
                   "rs485-2": serial_bus(lines["dlt645"], baudrate=2400, parity="E")},
            devices={"dust-1": device("rs485-1", "renke-dust-all-in-one", 1),
                     "meter-2": device("rs485-2", "generic-dlt645-2007", address="000000000002")})
        r = edge_agent("once", "-c", str(cfg))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dust-1  (renke-dust-all-in-one, unit 1 on rs485-1)  ok" in r.stdout
    assert re.search(r"pm2_5\s+\d+ µg/m³", r.stdout)
    assert "meter-2  (generic-dlt645-2007, meter 000000000002 on rs485-2)  ok" in r.stdout
    assert re.search(r"energy_import\s+\d+\.\d+ kWh", r.stdout) and re.search(r"voltage_l1\s+2\d\d(\.\d)? V", r.stdout)
    assert proc.returncode == 0, err
    assert f"virtual RS-485 line for the agent: {pty_dir}/rs485-agent  (units 1=renke-dust-all-in-one)" in out
    assert (f"virtual RS-485 line for DL/T 645 meters: {pty_dir}/dlt645-agent  (2400 8E1, meters "
            "000000000001=generic-dlt645-2007, 000000000002=generic-dlt645-2007)") in out


def test_simulate_serves_meters_alone_on_the_first_line_and_probe_finds_the_address(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "simulate", "--pty-dir", str(tmp_path),
                             "--ready-file", str(ready), "pty:123456789012=generic-dlt645-2007"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready.exists, 20, "the simulator to be ready")
        lines = json.loads(ready.read_text())
        assert lines == {"serial": str(tmp_path / "rs485-agent"), "dlt645": str(tmp_path / "rs485-agent")}
        r = edge_agent("probe", "--port", lines["dlt645"], "--dlt645", "--di", "00-01-00-00")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"meter 123456789012 @ {lines['dlt645']} 2400 8E1  (address read")
    assert re.search(r"00-01-00-00  forward active energy, total: \d+\.\d\d kWh", r.stdout)
    assert proc.returncode == 0, err
