"""The technician's tools against simulated slaves: probe, scan, profiles list|show.

Each command runs as the real ``edge-agent`` process; the slaves are pymodbus servers on a
socat pty pair or TCP. Runtime about 12 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.catalog import catalog, load_profile_file, resolve_profile
from drivers.modbus.simulator.runner import SimRunner
from drivers.modbus.simulator.server import SimSlave
from drivers.modbus.wire import rtu_wire_seconds
from tests.helpers import edge_agent

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]

CONSTANTS = """\
name: test-constants
vendor: Test
model: C-1
protocol: modbus
points:
  temperature: {table: holding, address: 10, type: int16, scale: 0.1, sim: {pattern: constant, value: -12.5}}
  pressure:    {table: holding, address: 11, type: float32, sim: {pattern: constant, value: 101.325}}
  flow:        {table: holding, address: 13, type: float32, word_order: little, sim: {pattern: constant, value: 42.5}}
  tag:         {table: holding, address: 15, type: string, length: 3, unit: "", sim: {pattern: constant, value: EA-01}}
  lamp_on:     {table: coil, address: 0, type: bool, sim: {pattern: constant, value: true}}
"""


@pytest.fixture
def constants(tmp_path: Path) -> SimSlave:
    path = tmp_path / "constants.yaml"
    path.write_text(CONSTANTS)
    return SimSlave(unit=1, profile=load_profile_file(path))


@pytest.fixture
def pty_line(constants: SimSlave) -> Iterator[SimRunner]:
    with SimRunner([constants], "pty") as sim:
        yield sim


# -- probe --------------------------------------------------------------------------------

def row(out: str, start: str) -> list[str]:
    lines = [ln.split() for ln in out.splitlines() if ln.split()[:1] == [start]]
    assert lines, f"no row for {start} in:\n{out}"
    return lines[0]


def test_probe_shows_raw_words_and_every_plausible_decoding(pty_line: SimRunner) -> None:
    r = edge_agent("probe", "--port", pty_line.port, "--unit", "1", "--address", "10", "--count", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.startswith(f"unit 1 @ {pty_line.port} 9600 8N1: holding 10..17 (8), answered in ")
    # register 10 holds -12.5 at scale 0.1: the word, and it read as int16
    assert row(out, "10")[1:5] == ["0x000A", "0xFF83", "65411", "-125"]
    # registers 11-12 hold 101.325 as float32, high word first; 13-14 hold 42.5 low word first
    pair = row(out, "11-12")
    assert pair[3] == "101.325", pair
    pair = row(out, "13-14")
    assert pair[6] == "42.5", pair
    assert "EA-01" in re.search(r'as text: "(.*)"', out).group(1)  # type: ignore[union-attr]


def test_probe_json_and_the_same_words_over_tcp_and_rtu_over_tcp(constants: SimSlave) -> None:
    docs = {}
    with SimRunner([constants], "pty") as pty, SimRunner([constants], "tcp") as tcp, \
            SimRunner([constants], "rtu-over-tcp") as rtu:
        for name, args in {"pty": ["--port", pty.port], "tcp": ["--host", tcp.port],
                           "rtu": ["--host", rtu.port, "--rtu-over-tcp"]}.items():
            r = edge_agent("probe", *args, "--unit", "1", "--address", "0x0A", "--count", "8", "--json")
            assert r.returncode == 0, r.stdout + r.stderr
            docs[name] = json.loads(r.stdout)
    doc = docs["pty"]
    assert doc["registers"][0] == {"address": 10, "hex": "0xFF83", "uint16": 65411, "int16": -125, "text": ".."}
    assert doc["pairs"][1]["abcd"]["float32"] == "101.325"
    assert doc["pairs"][3]["cdab"]["float32"] == "42.5"
    assert "EA-01" in doc["text"]
    assert docs["tcp"]["registers"] == docs["rtu"]["registers"] == doc["registers"]


def test_probe_reads_coils(pty_line: SimRunner) -> None:
    r = edge_agent("probe", "--port", pty_line.port, "--table", "coil", "--address", "0", "--count", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert row(r.stdout, "0") == ["0", "1"]


@pytest.mark.parametrize("args,status,hint", [
    (["--unit", "9"], "timeout", "check the unit id, baud rate and parity"),
    (["--unit", "1", "--address", "200"], "exception_02", "not in the device's map"),
])
def test_probe_says_why_it_got_nothing(pty_line: SimRunner, args: list[str], status: str, hint: str) -> None:
    r = edge_agent("probe", "--port", pty_line.port, "--timeout", "0.2", *args)
    assert r.returncode == 1
    assert f": {status}: " in r.stdout and hint in r.stdout


def test_probe_names_damaged_answers(pty_line: SimRunner, constants: SimSlave) -> None:
    constants.set_fault("bad_crc")
    r = edge_agent("probe", "--port", pty_line.port, "--address", "10", "--count", "2")
    assert r.returncode == 1 and ": crc_error: " in r.stdout and "wrong baud rate or parity" in r.stdout


# -- scan ---------------------------------------------------------------------------------

SITE = {1: "renke-dust-all-in-one", 3: "generic-radar-level-80ghz", 5: "eastron-sdm630"}


@pytest.fixture(scope="module")
def site() -> Iterator[SimRunner]:
    with SimRunner(SITE, "pty") as sim:
        yield sim


def test_scan_finds_the_units_and_the_profiles_that_fit_them(site: SimRunner) -> None:
    r = edge_agent("scan", "--port", site.port, "--units", "1-6", "--baudrate", "9600,4800")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{site.port} 9600 8N1: units that answer: 1, 3, 5" in r.stdout
    for unit, profile in SITE.items():
        assert re.search(rf"^  unit {unit}: {profile}  \(", r.stdout, re.M), r.stdout
    assert re.search(r"unit 1: renke-dust-all-in-one .*\n\s+wind_speed=[\d.]+ m/s", r.stdout), r.stdout
    assert re.search(r"unit 3: generic-radar-level-80ghz .*\n.*\n\s+also answers: .*renke-rs-ws-n01", r.stdout)
    # progress on stderr; stops at the first setting where something answered
    assert "scanning" in r.stderr and "unit 3 answers" in r.stderr and "3 answered" in r.stderr
    assert "4800" not in r.stderr


def test_scan_tries_every_setting_when_asked_and_says_when_nothing_answers(site: SimRunner) -> None:
    r = edge_agent("scan", "--port", site.port, "--units", "7-8", "--baudrate", "9600,4800,2400", "--all-settings")
    assert r.returncode == 1
    assert "no unit answered" in r.stdout
    for setting in ("9600 8N1", "4800 8N1", "2400 8N1"):  # (a pty refuses parity: not tried here)
        assert f"scanned {site.port} {setting}: 2 units" in r.stderr
    r = edge_agent("scan", "--port", "/dev/no-such-adapter", "--units", "1-2")
    assert r.returncode == 1 and "cannot open /dev/no-such-adapter" in r.stderr


def test_scan_reports_damaged_answers_as_a_hint_on_speed_or_parity() -> None:
    slave = SimSlave(unit=2, profile=resolve_profile("generic-radar-level-80ghz"))
    slave.set_fault("garbage")
    with SimRunner([slave], "pty") as sim:
        r = edge_agent("scan", "--port", sim.port, "--units", "1-3", "--no-profiles")
    assert r.returncode == 1
    assert "damaged answers from units 2: a device at another speed or parity" in r.stdout


def test_scan_waits_the_documented_half_second_for_a_slow_slave() -> None:
    slave = SimSlave(unit=2, profile=resolve_profile("generic-radar-level-80ghz"), slow_seconds=0.25)
    slave.set_fault("slow")  # every answer 250 ms late: within 0.5 s, past the old 0.2 s
    with SimRunner([slave], "pty") as sim:
        r = edge_agent("scan", "--port", sim.port, "--units", "1-3", "--no-profiles")
    assert "unit 2 answers" in r.stderr and "1 answered" in r.stderr, r.stdout + r.stderr


def test_scan_rejects_bad_ranges() -> None:
    r = edge_agent("scan", "--port", "/dev/null", "--units", "3-300")
    assert r.returncode == 2 and "bad unit range" in r.stderr


# -- profiles -------------------------------------------------------------------------------

def test_profiles_list_shows_the_whole_catalog() -> None:
    r = edge_agent("profiles", "list")
    assert r.returncode == 0
    names = {ln.split()[0] for ln in r.stdout.splitlines()[2:] if ln.strip() and not ln.startswith(" ")}
    assert set(catalog()) <= names
    assert re.search(r"^renke-dust-all-in-one\s+modbus\s+dust\s+Renke .*\s9\s+4800 8N1$", r.stdout, re.M)
    assert re.search(r"^generic-dlt645-2007\s+dlt645\s+energy\s.*\s2400 8E1$", r.stdout, re.M)
    assert f"{len(catalog())} profiles" in r.stdout
    r = edge_agent("profiles", "list", "--category", "water")
    assert "generic-radar-level-80ghz" in r.stdout and "renke-dust-all-in-one" not in r.stdout


def test_profiles_show_gives_points_and_the_read_plan() -> None:
    r = edge_agent("profiles", "show", "renke-dust-all-in-one")
    assert r.returncode == 0
    assert re.search(r"^pm2_5\s+holding\s+507 \(0x01FB\)\s+uint16\s+µg/m³", r.stdout, re.M), r.stdout
    assert re.search(r"^temperature\s+holding\s+505 \(0x01F9\)\s+int16\s+x0.1\s+°C", r.stdout, re.M)
    wire = rtu_wire_seconds(8, 5 + 32, 4800) * 1000
    assert "read plan: 1 request per poll" in r.stdout
    assert re.search(rf"^fc3\s+holding\s+500..515\s+16 registers\s+{wire:.1f} ms\s+wind_speed, ", r.stdout, re.M)
    r = edge_agent("profiles", "show", "eastron-sdm630")
    assert "read plan: 2 requests per poll" in r.stdout and re.search(r"^fc4\s+input\s+0..11\s+12 registers", r.stdout,
                                                                      re.M)


def test_profiles_show_by_path_and_with_a_misspelt_name(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONSTANTS)
    r = edge_agent("profiles", "show", str(path))
    assert r.returncode == 0 and re.search(r"^flow\s+holding\s+13 \(0x000D\)\s+float32 \(big/little\)", r.stdout, re.M)
    assert re.search(r"^lamp_on\s+coil\s+0 \(0x0000\)\s+bool", r.stdout, re.M)
    r = edge_agent("profiles", "show", "renke-dust-all-in-on")
    assert r.returncode == 2 and "did you mean 'renke-dust-all-in-one'" in r.stderr


@pytest.mark.parametrize("command", [["probe"], ["scan"], ["profiles", "list"], ["profiles", "show"]])
def test_the_tools_explain_themselves(command: list[str]) -> None:
    r = edge_agent(*command, "--help")
    assert r.returncode == 0 and "examples:" in r.stdout
