"""systemd: the notify protocol reaches a real datagram socket from a real ``edge-agent run``,
the unit's hardening scores where systemd-analyze runs, and journald gets priorities."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.harness.site import device, tcp_bus, write_site
from agent.logsetup import JournalFormatter, journal_attached
from agent.sdnotify import Notifier
from tests.helpers import ROOT, SimulatorThread

UNIT = ROOT / "systemd" / "edge-agent.service"


def _receive(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """Datagrams until one contains ``until``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} within {timeout:.0f}s; got {got}")


@pytest.mark.slow
def test_ready_watchdog_status_and_reload_reach_the_notify_socket(tmp_path: Path) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630"}).start()
    cfg = write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)},
                     devices={"meter-1": device("lan", "eastron-sdm630", 1, interval="1s")})
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        got = _receive(sock, "READY=1", 30)
        assert "STATUS=1 device, 0 offline; 0 of 0 uplinks up" in got[-1]
        watchdogs = [m for m in _receive(sock, "WATCHDOG=1", 2) if "WATCHDOG=1" in m]
        t0 = time.monotonic()
        watchdogs += [m for m in _receive(sock, "WATCHDOG=1", 2) if "WATCHDOG=1" in m]
        assert time.monotonic() - t0 < 0.6  # at half of WATCHDOG_USEC
        proc.send_signal(signal.SIGHUP)
        reload = _receive(sock, "READY=1", 15)
        assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in reload), reload
        proc.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in m for m in _receive(sock, "STOPPING=1", 15))
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate()[1].decode()
        sock.close()
        sim.stop()
    assert "reload: applied" in stderr, stderr


def test_no_notify_socket_means_no_messages_and_no_task() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")  # nothing to send to: no error


def test_watchdog_interval_is_for_this_process_only() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000"}).watchdog_interval == 2.0
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": "@x"}).address == "\0x"  # an abstract socket


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_is_hardened() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    line = next(t for t in (out.stdout + out.stderr).splitlines() if "Overall exposure level" in t)
    score = float(line.split(":")[-1].split()[0])
    assert score <= 2.0, out.stdout


def test_the_unit_is_what_systemd_expects_of_the_agent() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=always",
                 "User=edge-agent", "StateDirectory=edge-agent", "DeviceAllow=char-ttyUSB rw",
                 "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyAMA rw", "DeviceAllow=char-ttyS rw",
                 "CapabilityBoundingSet=\n", "ProtectSystem=strict", "SystemCallFilter=@system-service"):
        assert line in text, line


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("agent.scheduler", level, __file__, 1, msg, None, None)


def test_journal_lines_carry_a_priority_and_no_timestamp() -> None:
    fmt = JournalFormatter()
    line = fmt.format(_record(logging.WARNING, "device dust-1: offline"))
    assert line == "<4>agent.scheduler: device dust-1: offline"
    assert fmt.format(_record(logging.ERROR, "a\nb")) == "<3>agent.scheduler: a\n<3>b"
    assert fmt.format(_record(logging.INFO, "x")).startswith("<6>")
    assert fmt.format(_record(logging.DEBUG, "x")).startswith("<7>")
    assert fmt.format(_record(logging.CRITICAL, "x")).startswith("<2>")


def test_the_journal_format_is_chosen_only_for_the_stream_systemd_connected(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert journal_attached(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal_attached(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journal_attached(stream, {})
    assert not journal_attached(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_journald_output_of_a_real_process(tmp_path: Path) -> None:
    """What journald would store: a child whose stderr is the journal stream."""
    out = tmp_path / "journal"
    code = ("import logging, os, sys; from agent.logsetup import setup_logging; setup_logging('info'); "
            "logging.getLogger('agent.x').warning('device d: offline; retrying every 2s..60s'); "
            "logging.getLogger('agent.x').debug('poll')")
    with open(out, "wb") as stream:
        st = os.fstat(stream.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([sys.executable, "-c", code], stderr=stream, env=env, cwd=ROOT, check=True, timeout=30)
    assert out.read_text() == "<4>agent.x: device d: offline; retrying every 2s..60s\n"


def test_the_readmes_gateway_install_yields_this_unit() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## On a gateway"):]
    block = section[section.index("```sh") + 5:section.index("```", section.index("```sh") + 5)]
    unit = UNIT.read_text()
    venv_bin = re.search(r"python3 -m venv (\S+)", block)
    link = re.search(r"ln -sf? (\S+) (\S+)", block)
    assert venv_bin and link and link.group(1) == f"{venv_bin.group(1)}/bin/edge-agent"
    assert f"ExecStart={link.group(2)} run -c /etc/edge-agent/config.yaml" in unit
    assert "cp config/example.yaml /etc/edge-agent/config.yaml" in block
    assert "cp systemd/edge-agent.service /etc/systemd/system/" in block
    user = re.search(r"useradd .*--groups (\S+) .* (\S+)\n", block)
    assert user and f"User={user.group(2)}" in unit and f"SupplementaryGroups={user.group(1)}" in unit
    assert "--user-group" in block and f"Group={user.group(2)}" in unit
    assert "pip install ." in block  # the package from this clone (pyproject.toml)
    assert (ROOT / "config" / "example.yaml").exists() and (ROOT / "pyproject.toml").exists()
