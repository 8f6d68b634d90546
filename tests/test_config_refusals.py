"""Config that would publish nonsense is refused with FILE:LINE, and no command prints a
Python traceback for a failure a user can cause (every case runs the real command)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.localbroker import LocalBroker
from tests.helpers import ROOT, AgentProcess, SimulatorThread, edge_agent, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them


def test_config_that_would_publish_nonsense_is_refused_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    (tmp_path / "pass").write_text("secret\n")
    (tmp_path / "pass").chmod(0o644)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"""\
gateway: {{id: gw, data_dir: {tmp_path / "not-a-dir"}}}
buses:
  rs485-1: {{type: serial, port: {tmp_path / "ttyUSB9"}}}
  lan: {{type: tcp, host: 127.0.0.1}}
devices:
  dust-1: {{bus: rs485-1, unit: 1, profile: renke-dust-all-in-one, interval: 10s}}
  dust-1: {{bus: lan, unit: 1, profile: eastron-sdm630}}
""")
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    # YAML would keep the second dust-1 (an energy meter) without a word
    assert f"{cfg}:7: devices.dust-1: duplicate key 'dust-1' (first at line 6)" in r.stdout, r.stdout

    cfg.write_text(f"""\
gateway: {{id: gw, data_dir: {tmp_path / "not-a-dir"}}}
buses:
  rs485-1: {{type: serial, port: {tmp_path / "ttyUSB9"}}}
devices:
  dust-1: {{bus: rs485-1, unit: 1, profile: renke-dust-all-in-one, interval: 48h}}
  dust-2: {{bus: rs485-1, unit: 2, profile: renke-dust-all-in-one, interval: 50ms}}
uplinks:
  central: {{type: mqtt, host: 127.0.0.1, tls: {{ca: missing-ca.pem}}}}
  city: {{type: mqtt, host: 127.0.0.1, username: gw, password_file: pass}}
""")
    for command in ("check", "run"):
        r = edge_agent(command, "-c", str(cfg), timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "Traceback" not in out
        assert f"{cfg}:5: devices.dust-1.interval: interval must be between 100ms and 1 day (24h), not 172800s" in out
        assert f"{cfg}:6: devices.dust-2.interval: interval must be between 100ms and 1 day (24h), not 0.05s" in out
    cfg.write_text(cfg.read_text().replace("interval: 48h", "interval: 1h").replace("interval: 50ms", "interval: 1s"))
    r = edge_agent("check", "-c", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"{cfg}:8: uplinks.central.tls.ca: missing-ca.pem: No such file or directory" in out, out
    assert f"{cfg}:9: uplinks.city.password_file: warning: pass is readable by group and others (mode 0644)" in out
    assert f"{cfg}:3: buses.rs485-1.port: warning: {tmp_path / 'ttyUSB9'}: No such file or directory" in out
    (tmp_path / "missing-ca.pem").write_text("x\n")
    for command in ("check", "run"):
        r = edge_agent(command, "-c", str(cfg), timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert f"{cfg}:1: gateway.data_dir: {tmp_path / 'not-a-dir'}: is not a directory" in out, out
    # fixed: the warnings stay, the problems are gone
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "not-a-dir"), str(tmp_path / "data")))
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "password_file: warning" in r.stdout
    assert not (tmp_path / "data").exists(), "check must not create the data_dir"


def test_duplicate_keys_in_a_profile_file_are_refused(tmp_path: Path) -> None:
    prof = tmp_path / "my-level.yaml"
    prof.write_text("name: my-level\nvendor: Acme\nmodel: L-1\npoints:\n"
                    "  water_level: {table: holding, address: 0, type: float32}\n"
                    "  water_level: {table: holding, address: 8, type: uint16}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path / 'data'}}}\n"
                   "buses:\n  lan: {type: tcp, host: 127.0.0.1}\n"
                   "devices:\n  level-1: {bus: lan, unit: 2, profile: ./my-level.yaml}\n")
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{prof}:6: points.water_level: duplicate key 'water_level' (first at line 5)" in r.stdout, r.stdout


def test_overlapping_points_in_a_profile_are_refused_by_check_and_run(tmp_path: Path) -> None:
    """A float32 at 0x10 and a uint16 at 0x11 decode one register twice: nonsense values."""
    prof = tmp_path / "my-level.yaml"
    prof.write_text("name: my-level\nvendor: Acme\nmodel: L-1\npoints:\n"
                    "  water_level: {table: holding, address: 0x10, type: float32}\n"
                    "  temperature: {table: holding, address: 0x11, type: int16, scale: 0.1}\n"
                    "  status_ok: {table: holding, address: 0x12, type: bit, bit: 0, unit: bool}\n"
                    "  status_alarm: {table: holding, address: 0x12, type: bit, bit: 1, unit: bool}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path / 'data'}}}\n"
                   "buses:\n  lan: {type: tcp, host: 127.0.0.1}\n"
                   "devices:\n  level-1: {bus: lan, unit: 2, profile: ./my-level.yaml}\n")
    for command in ("check", "run"):
        r = edge_agent(command, "-c", str(cfg))
        out = _no_traceback(r, command)
        assert f"{prof}:6: points.temperature.address: overlaps point 'water_level'" in out, out
        assert "status_alarm" not in out  # bits of one register are separate points


def _no_traceback(r: subprocess.CompletedProcess[str], what: str, rc: int | None = 1) -> str:
    out = r.stdout + r.stderr
    assert "Traceback" not in out, f"{what}:\n{out}"
    if rc is not None:
        assert r.returncode == rc, f"{what}: exit {r.returncode}\n{out}"
    return out


BROKEN_CONFIGS = {
    "missing": None,
    "yaml-syntax": "gateway: {{id: gw\nuplinks: [\n",
    "data-dir-is-a-file": "gateway: {{id: gw, data_dir: {file}}}\nuplinks: {{}}\n",
    "data-dir-under-a-file": "gateway: {{id: gw, data_dir: {file}/sub}}\nuplinks: {{}}\n",
}
COMMANDS = [("check",), ("run",), ("once",), ("buffer", "stats"), ("buffer", "export"),
            ("buffer", "rename-uplink", "a", "b"), ("buffer", "drop-uplink", "a")]


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS))
def test_no_command_prints_a_traceback_for_a_broken_config(tmp_path: Path, case: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    cfg = tmp_path / "config.yaml"
    text = BROKEN_CONFIGS[case]
    if text is not None:
        cfg.write_text(text.format(file=afile))
    for command in COMMANDS:
        *words, = command
        args = [*words[:2], "-c", str(cfg), *words[2:]] if words[0] == "buffer" else [*words, "-c", str(cfg)]
        # `once` and `check`/`run` need no data_dir to read a broken one: the rest say what is wrong
        expect = 0 if case.startswith("data-dir") and words[0] == "once" else 1
        out = _no_traceback(edge_agent(*args, timeout=30), f"{' '.join(words)} on {case}", expect)
        if expect:
            assert out.strip(), f"{' '.join(words)} on {case}: no message"
        if case == "missing":
            assert "cannot read: No such file or directory" in out
        if case == "yaml-syntax":
            assert f"{cfg}:2: YAML syntax" in out
        if case.startswith("data-dir") and words[0] in ("check", "run"):
            assert "gateway.data_dir" in out and ("is not a directory" in out or "cannot be created" in out), out


def test_no_traceback_from_tools_a_technician_misuses(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = edge_agent("simulate", "--tcp", f"127.0.0.1:{port}", "tcp:1=eastron-sdm630", timeout=30)
        out = _no_traceback(r, "simulate on a port in use")
        assert f"cannot serve Modbus TCP on 127.0.0.1:{port}: Address already in use" in out
    out = _no_traceback(edge_agent("scan", "--port", str(tmp_path / "ttyNOPE"), "--units", "1-2"), "scan", None)
    assert "cannot open" in out
    _no_traceback(edge_agent("probe", "--port", str(tmp_path / "ttyNOPE"), "--unit", "1", "--address", "0"),
                  "probe", None)
    out = _no_traceback(edge_agent("profiles", "show", "no-such-profile"), "profiles show", None)
    assert "unknown profile" in out


def test_once_into_head_ends_quietly(tmp_path: Path) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630", 2: "eastron-sdm630", 3: "eastron-sdm630"}).start()
    try:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path / 'data'}}}\n"
                       f"buses:\n  lan: {{type: tcp, host: 127.0.0.1, port: {sim.tcp_port}}}\ndevices:\n"
                       + "".join(f"  meter-{u}: {{bus: lan, unit: {u}, profile: eastron-sdm630}}\n" for u in (1, 2, 3)))
        r = subprocess.run(f"'{sys.executable}' -m agent.cli once -c '{cfg}' | head -1", shell=True,
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    finally:
        sim.stop()
    assert r.stdout.startswith("meter-1  (eastron-sdm630, unit 1 on lan)  ok"), r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_a_tls_uplink_against_a_plain_port_says_the_handshake_failed(tmp_path: Path, broker: LocalBroker) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path / 'data'}}}\n"
                   f"uplinks:\n  central: {{type: mqtt, host: 127.0.0.1, port: {broker.port}, tls: true,"
                   " reconnect_min: 1s, reconnect_max: 2s}\n")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "uplink central:" in agent.log(), 20, "the uplink's first connection attempt")
        time.sleep(0.5)
    finally:
        rc = agent.stop()
    log = agent.log()
    assert rc == 0 and "Traceback" not in log, log
    assert f"TLS: the handshake with 127.0.0.1:{broker.port} failed" in log, log
    assert "does not speak TLS on this port" in log
